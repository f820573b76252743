package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Quantiles summarises one histogram; latencies in microseconds.
type Quantiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// quantilesOf reads h, dividing values by unit (1e3 for ns → µs).
func quantilesOf(h *Hist, unit float64) Quantiles {
	return Quantiles{
		Count: h.Count(), Mean: h.Mean() / unit,
		P50: float64(h.Quantile(0.50)) / unit, P90: float64(h.Quantile(0.90)) / unit,
		P99: float64(h.Quantile(0.99)) / unit, P999: float64(h.Quantile(0.999)) / unit,
		Max: float64(h.Max()) / unit,
	}
}

// Summary is one target's results.
type Summary struct {
	Target     string            `json:"target"`
	Requests   uint64            `json:"requests"`
	OK         uint64            `json:"ok"`
	Failed     uint64            `json:"failed"`
	Incomplete uint64            `json:"incompleteStreams"`
	Tokens     uint64            `json:"tokens"`
	RatePerSec float64           `json:"achievedRatePerSec"`
	Errors     map[string]uint64 `json:"errors,omitempty"`
	// LatencyUs is due time → last byte of successful requests, µs.
	LatencyUs    Quantiles  `json:"latencyUs"`
	ErrLatencyUs *Quantiles `json:"errorLatencyUs,omitempty"`
	TTFTUs       *Quantiles `json:"ttftUs,omitempty"`
	GapUs        *Quantiles `json:"interTokenGapUs,omitempty"`
	TokensPerSec *Quantiles `json:"tokensPerSec,omitempty"`
	SendLagUs    Quantiles  `json:"sendLagUs"`
	// ServiceUs is send → last byte (LatencyUs without the send lag).
	ServiceUs     Quantiles  `json:"serviceUs"`
	ServiceTTFTUs *Quantiles `json:"serviceTtftUs,omitempty"`
	latency       *Hist
	ttft          *Hist
}

// Summarise turns stats into a Summary; active is the time the target
// had load (half the run for each side of a comparison).
func Summarise(s *Stats, active time.Duration) Summary {
	sent, ok, failed, inc, tok := s.Counts()
	sm := Summary{Target: s.Name, Requests: sent, OK: ok, Failed: failed, Incomplete: inc, Tokens: tok,
		Errors: s.Errors(), LatencyUs: quantilesOf(s.Latency, 1e3), SendLagUs: quantilesOf(s.SendLag, 1e3),
		ServiceUs: quantilesOf(s.Service, 1e3),
		latency:   s.Latency, ttft: s.TTFT}
	if active > 0 {
		sm.RatePerSec = float64(sent) / active.Seconds()
	}
	if s.ErrLatency.Count() > 0 {
		q := quantilesOf(s.ErrLatency, 1e3)
		sm.ErrLatencyUs = &q
	}
	if s.TTFT.Count() > 0 {
		a, b, c := quantilesOf(s.TTFT, 1e3), quantilesOf(s.Gap, 1e3), quantilesOf(s.TokPerSec, 1e3)
		sm.TTFTUs, sm.GapUs, sm.TokensPerSec = &a, &b, &c
		d := quantilesOf(s.ServiceTTFT, 1e3)
		sm.ServiceTTFTUs = &d
	}
	return sm
}

// Added is gateway minus direct at each percentile, µs, for latency and
// (streams) time to first token, from the due time and from the send.
type Added struct {
	LatencyUs     Quantiles  `json:"latencyUs"`
	TTFTUs        *Quantiles `json:"ttftUs,omitempty"`
	ServiceUs     Quantiles  `json:"serviceUs"`
	ServiceTTFTUs *Quantiles `json:"serviceTtftUs,omitempty"`
}

func diff(a, b Quantiles) Quantiles {
	return Quantiles{Count: a.Count, Mean: a.Mean - b.Mean, P50: a.P50 - b.P50, P90: a.P90 - b.P90,
		P99: a.P99 - b.P99, P999: a.P999 - b.P999, Max: a.Max - b.Max}
}

// Compare returns gw − direct.
func Compare(gw, direct Summary) Added {
	a := Added{LatencyUs: diff(gw.LatencyUs, direct.LatencyUs), ServiceUs: diff(gw.ServiceUs, direct.ServiceUs)}
	if gw.TTFTUs != nil && direct.TTFTUs != nil {
		d := diff(*gw.TTFTUs, *direct.TTFTUs)
		a.TTFTUs = &d
	}
	if gw.ServiceTTFTUs != nil && direct.ServiceTTFTUs != nil {
		d := diff(*gw.ServiceTTFTUs, *direct.ServiceTTFTUs)
		a.ServiceTTFTUs = &d
	}
	return a
}

// BenchCPU is the load generator's own CPU use over the run.
type BenchCPU struct {
	UserSec float64 `json:"userSec"`
	SysSec  float64 `json:"sysSec"`
	// CoreFraction is CPU seconds ÷ wall seconds: near 1 would mean the
	// bench saturated its core and the figures are the bench's, not the
	// target's.
	CoreFraction float64 `json:"coreFraction"`
	// UsPerRequest is the bench's CPU per request, µs.
	UsPerRequest float64 `json:"usPerRequest"`
}

// ProcFigures is the measured process's (the gateway's) cost over the run.
type ProcFigures struct {
	// Name is what the process is: "gateway", or "mock" (the upstream, a
	// same-run yardstick: it parses and answers the same requests).
	Name   string  `json:"name"`
	PID    int     `json:"pid"`
	CPUSec float64 `json:"cpuSec"`
	// SysFraction is the kernel's share of CPUSec.
	SysFraction float64 `json:"sysFraction"`
	// CPUSecPer1000 is CPU seconds per 1,000 requests it served.
	CPUSecPer1000 float64 `json:"cpuSecPer1000Requests"`
	// UsPerRequest is the same figure in µs per request.
	UsPerRequest float64 `json:"usPerRequest"`
	// ImpliedCapacity is 1 ÷ CPU per request: requests/s one core could
	// serve if nothing else were the limit.
	ImpliedCapacity float64 `json:"impliedCapacityPerCore"`
	RSSStartMB      float64 `json:"rssStartMB"`
	RSSEndMB        float64 `json:"rssEndMB"`
	PeakRSSMB       float64 `json:"peakRssMB"`
	// Resolution is the CPU clock's tick (10 ms): short runs are coarse.
	ResolutionSec float64 `json:"resolutionSec"`
}

// NewProcFigures computes the figures of process name from samples before
// and after it served requests requests.
func NewProcFigures(name string, pid int, before, after ProcSample, requests uint64) ProcFigures {
	cpu := (after.CPU - before.CPU).Seconds()
	f := ProcFigures{Name: name, PID: pid, CPUSec: cpu, RSSStartMB: mb(before.RSS), RSSEndMB: mb(after.RSS),
		PeakRSSMB: mb(after.PeakRSS), ResolutionSec: 1.0 / clockTicks}
	if cpu > 0 {
		f.SysFraction = (after.Sys - before.Sys).Seconds() / cpu
	}
	if requests > 0 {
		f.CPUSecPer1000 = cpu * 1000 / float64(requests)
		f.UsPerRequest = cpu * 1e6 / float64(requests)
		if f.UsPerRequest > 0 {
			f.ImpliedCapacity = 1e6 / f.UsPerRequest
		}
	}
	return f
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// HoldFigures is the RSS-per-open-stream measurement.
type HoldFigures struct {
	Requested int               `json:"requested"`
	Open      int               `json:"open"`
	Errors    map[string]uint64 `json:"errors,omitempty"`
	RSSIdleMB float64           `json:"rssIdleMB"`
	RSSOpenMB float64           `json:"rssOpenMB"`
	// KiBPerStream is (RSS with the streams open − RSS before) ÷ open.
	KiBPerStream float64 `json:"kibPerStream"`
	PeakRSSMB    float64 `json:"peakRssMB"`
}

// Report is everything one bench invocation measured.
type Report struct {
	Scenario    string        `json:"scenario,omitempty"`
	Date        string        `json:"date"`
	GoVersion   string        `json:"goVersion"`
	NumCPU      int           `json:"numCPU"`
	MachineCPUs int           `json:"machineCPUs"`
	LoadAvg     string        `json:"loadAvgBefore"`
	LoadAvgEnd  string        `json:"loadAvgAfter"`
	Mode        string        `json:"mode"`
	Rate        float64       `json:"plannedRatePerSec,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	Stream      bool          `json:"stream"`
	WallSec     float64       `json:"wallSec"`
	Targets     []Summary     `json:"targets"`
	Added       *Added        `json:"addedByGateway,omitempty"`
	Bench       BenchCPU      `json:"benchCPU"`
	Gateway     *ProcFigures  `json:"gatewayProcess,omitempty"`
	Mock        *ProcFigures  `json:"mockProcess,omitempty"`
	Hold        *HoldFigures  `json:"hold,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
	wall        time.Duration // unexported: for text only
}

// fmtNs prints a nanosecond value with a readable unit.
func fmtNs(ns int64) string { return fmtUs(float64(ns) / 1e3) }

func fmtUs(us float64) string {
	a := math.Abs(us)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.0fµs", us)
}

func qLine(q Quantiles, f func(float64) string) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, n=%d)",
		f(q.P50), f(q.P90), f(q.P99), f(q.P999), f(q.Max), f(q.Mean), q.Count)
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "== %s  %s  %s, %d cores (bench may use %d), load %s → %s\n", orDash(r.Scenario), r.Date, r.GoVersion, r.MachineCPUs, r.NumCPU, r.LoadAvg, r.LoadAvgEnd)
	if r.Mode == "open" {
		fmt.Fprintf(w, "open loop at %.0f req/s, stream=%v, %.1fs\n", r.Rate, r.Stream, r.WallSec)
	} else if r.Mode == "closed" {
		fmt.Fprintf(w, "closed loop, %d concurrent, stream=%v, %.1fs\n", r.Concurrency, r.Stream, r.WallSec)
	}
	for _, s := range r.Targets {
		fmt.Fprintf(w, "\n[%s] %d requests, %.0f req/s achieved, ok %d (%.2f%%), failed %d, incomplete streams %d\n",
			s.Target, s.Requests, s.RatePerSec, s.OK, pct(s.OK, s.Requests), s.Failed, s.Incomplete)
		fmt.Fprintf(w, "  latency     %s\n", qLine(s.LatencyUs, fmtUs))
		if s.TTFTUs != nil {
			fmt.Fprintf(w, "  first token %s\n", qLine(*s.TTFTUs, fmtUs))
			fmt.Fprintf(w, "  token gap   %s\n", qLine(*s.GapUs, fmtUs))
			fmt.Fprintf(w, "  tokens/s    %s\n", qLine(*s.TokensPerSec, func(v float64) string { return fmt.Sprintf("%.0f", v) }))
		}
		if s.ErrLatencyUs != nil {
			fmt.Fprintf(w, "  error lat.  %s\n", qLine(*s.ErrLatencyUs, fmtUs))
		}
		for _, k := range sortedKeys(s.Errors) {
			fmt.Fprintf(w, "  error %-40s %d\n", k, s.Errors[k])
		}
		fmt.Fprintf(w, "  send lag    p50 %s  p99 %s  max %s (bench lateness vs schedule)\n",
			fmtUs(s.SendLagUs.P50), fmtUs(s.SendLagUs.P99), fmtUs(s.SendLagUs.Max))
		fmt.Fprintf(w, "  service     %s (from the send)\n", qLine(s.ServiceUs, fmtUs))
		if s.ServiceTTFTUs != nil {
			fmt.Fprintf(w, "  svc 1st tok %s (from the send)\n", qLine(*s.ServiceTTFTUs, fmtUs))
		}
	}
	if r.Added != nil {
		sign := func(v float64) string {
			if v >= 0 {
				return "+" + fmtUs(v)
			}
			return fmtUs(v)
		}
		fmt.Fprintf(w, "\nadded by gateway (gateway − direct, same schedule, interleaved)\n")
		fmt.Fprintf(w, "  latency     %s\n", qLine(r.Added.LatencyUs, sign))
		if r.Added.TTFTUs != nil {
			fmt.Fprintf(w, "  first token %s\n", qLine(*r.Added.TTFTUs, sign))
		}
		fmt.Fprintf(w, "  service     %s (from the send)\n", qLine(r.Added.ServiceUs, sign))
		if r.Added.ServiceTTFTUs != nil {
			fmt.Fprintf(w, "  svc 1st tok %s (from the send)\n", qLine(*r.Added.ServiceTTFTUs, sign))
		}
	}
	for _, g := range []*ProcFigures{r.Gateway, r.Mock} {
		if g == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s pid %d: CPU %.2fs (%.0f%% kernel) = %.3f s per 1,000 requests = %.1f µs/request (implied %.0f req/s per core); RSS %.1f → %.1f MB, peak %.1f MB\n",
			g.Name, g.PID, g.CPUSec, 100*g.SysFraction, g.CPUSecPer1000, g.UsPerRequest, g.ImpliedCapacity, g.RSSStartMB, g.RSSEndMB, g.PeakRSSMB)
	}
	if h := r.Hold; h != nil {
		fmt.Fprintf(w, "\nhold: %d/%d streams open; RSS %.1f MB idle → %.1f MB open = %.1f KiB per stream; peak %.1f MB\n",
			h.Open, h.Requested, h.RSSIdleMB, h.RSSOpenMB, h.KiBPerStream, h.PeakRSSMB)
		for _, k := range sortedKeys(h.Errors) {
			fmt.Fprintf(w, "  error %-40s %d\n", k, h.Errors[k])
		}
	}
	fmt.Fprintf(w, "\nbench CPU: user %.2fs sys %.2fs = %.0f%% of one core, %.1f µs/request\n",
		r.Bench.UserSec, r.Bench.SysSec, r.Bench.CoreFraction*100, r.Bench.UsPerRequest)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// WritePlot writes a self-contained HTML page with the latency (and first
// token) distributions of every target as percentile curves, HdrHistogram
// style: the x axis is 1/(1−q) on a log scale so the tail is readable.
func (r *Report) WritePlot(w io.Writer) error {
	type series struct {
		name string
		pts  []Point
	}
	var ss []series
	for _, s := range r.Targets {
		if s.latency != nil {
			ss = append(ss, series{s.Target + " latency", s.latency.CDF()})
		}
		if s.ttft != nil && s.ttft.Count() > 0 {
			ss = append(ss, series{s.Target + " first token", s.ttft.CDF()})
		}
	}
	const W, H, L, B = 900.0, 480.0, 70.0, 50.0
	const maxX = 5.0 // decades of 1/(1−q): up to the 99.999th percentile
	maxY := 1.0
	for _, s := range ss {
		for _, p := range s.pts {
			maxY = math.Max(maxY, float64(p.Value)/1e3)
		}
	}
	x := func(q float64) float64 {
		v := math.Log10(1 / math.Max(1-q, 1e-5))
		return L + (W-L-20)*math.Min(v, maxX)/maxX
	}
	y := func(us float64) float64 { return H - B - (H-B-20)*us/maxY }
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"}
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html><meta charset=utf-8><title>bench %s</title><body style=\"font-family:sans-serif\">", html.EscapeString(r.Scenario))
	fmt.Fprintf(&b, "<h3>%s — %s, %s, %d cores, load %s</h3>", html.EscapeString(orDash(r.Scenario)), r.Date, r.GoVersion, r.MachineCPUs, r.LoadAvg)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="12">`, W, H)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#000"/>`, L, H-B, W-20, H-B)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="20" x2="%.0f" y2="%.0f" stroke="#000"/>`, L, L, H-B)
	for i, lbl := range []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"} {
		q := 1 - math.Pow(10, -float64(i))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, x(q), H-B+18, lbl)
	}
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, L-6, y(v)+4, fmtUs(v))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">percentile</text>`, (W+L)/2, H-10)
	for i, s := range ss {
		c := colors[i%len(colors)]
		var pts strings.Builder
		prevQ := 0.0
		for _, p := range s.pts {
			us := float64(p.Value) / 1e3
			fmt.Fprintf(&pts, "%.1f,%.1f %.1f,%.1f ", x(prevQ), y(us), x(p.Quantile), y(us))
			prevQ = p.Quantile
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, c, pts.String())
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" fill="%s">%s</text>`, L+10, 35+16*i, c, html.EscapeString(s.name))
	}
	b.WriteString("</svg><pre>")
	var txt strings.Builder
	r.WriteText(&txt)
	b.WriteString(html.EscapeString(txt.String()))
	b.WriteString("</pre></body>")
	_, err := io.WriteString(w, b.String())
	return err
}
