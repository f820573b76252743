package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// runHold holds o.hold streams open on t and fills rep with the gateway's
// memory per open stream. It returns an exit code (0: write the report).
func (o *options) runHold(rep *Report, t *Target, progress, stderr io.Writer) int {
	if o.pid == 0 {
		fmt.Fprintln(stderr, "bench: -hold needs -gateway-pid")
		return 2
	}
	rep.Mode = "hold"
	before, err := ReadProc(o.pid)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	hf := &HoldFigures{Requested: o.hold, RSSIdleMB: mb(before.RSS)}
	open, errs := Hold(t, o.hold, o.holdRate, o.holdFor, o.timeout, func(open int) {
		if s, err := ReadProc(o.pid); err == nil {
			hf.RSSOpenMB = mb(s.RSS)
			if open > 0 {
				hf.KiBPerStream = float64(s.RSS-before.RSS) / 1024 / float64(open)
			}
		}
		if progress != nil {
			fmt.Fprintf(progress, "hold: %d streams open, gateway RSS %.1f MB\n", open, hf.RSSOpenMB)
		}
	})
	hf.Open, hf.Errors = open, errs
	if s, err := ReadProc(o.pid); err == nil {
		hf.PeakRSSMB = mb(s.PeakRSS)
	}
	rep.Hold = hf
	rep.LoadAvgEnd = LoadAvg()
	return 0
}

// runMeasured runs the warm-up and the measured load (steering the mock
// as the scenario says) and fills rep. It returns an exit code (0: write
// the report).
func (o *options) runMeasured(rep *Report, sc *Scenario, targets []*Target, progress, stderr io.Writer, stop <-chan struct{}) int {
	cfg := Config{Rate: o.rate, Concurrency: o.conc, Count: o.count, Duration: o.dur, Timeout: o.timeout,
		MaxInFlight: o.maxInFlight, Slice: o.slice, Progress: progress}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	rep.Mode = "open"
	if cfg.Rate == 0 {
		rep.Mode = "closed"
	}
	mc := MockControl{HTTP: &http.Client{Timeout: 5 * time.Second}}
	if sc != nil && (len(sc.MockStart) > 0 || len(sc.MockPhases) > 0) {
		restore, err := prepareMock(mc, o.mockCtl, sc)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer restore()
	}
	if o.warmup > 0 {
		w := cfg
		w.Count, w.Duration, w.Progress = 0, o.warmup, nil
		if _, _, err := Run(w, targets, SystemClock{}, stop); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	if sc != nil && len(sc.MockPhases) > 0 {
		phasesDone := runPhases(mc, o.mockCtl, sc.MockPhases, stderr)
		defer func() { <-phasesDone }()
	}
	var gwBefore, mockBefore ProcSample
	for _, p := range []struct {
		pid int
		s   *ProcSample
	}{{o.pid, &gwBefore}, {o.mockPid, &mockBefore}} {
		if p.pid == 0 {
			continue
		}
		var err error
		if *p.s, err = ReadProc(p.pid); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	u0, s0 := SelfCPU()
	stats, wall, err := Run(cfg, targets, SystemClock{}, stop)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	u1, s1 := SelfCPU()
	rep.LoadAvgEnd = LoadAvg()
	o.report(rep, stats, wall, u1-u0, s1-s0, gwBefore, mockBefore)
	return 0
}

// report fills rep from a measured run: per-target summaries, the added
// latency, the bench's own CPU (user and sys, over the run) and the
// measured processes' figures.
func (o *options) report(rep *Report, stats []*Stats, wall, user, sys time.Duration, gwBefore, mockBefore ProcSample) {
	cpu := user + sys
	rep.WallSec = wall.Seconds()
	active := wall
	if len(stats) == 2 {
		active = wall / 2
	}
	var total uint64
	for _, s := range stats {
		rep.Targets = append(rep.Targets, Summarise(s, active))
		n, _, _, _, _ := s.Counts()
		total += n
	}
	if len(rep.Targets) == 2 {
		a := Compare(rep.Targets[1], rep.Targets[0])
		rep.Added = &a
	}
	rep.Bench = BenchCPU{UserSec: user.Seconds(), SysSec: sys.Seconds()}
	if wall > 0 {
		rep.Bench.CoreFraction = cpu.Seconds() / wall.Seconds()
	}
	if total > 0 {
		rep.Bench.UsPerRequest = cpu.Seconds() * 1e6 / float64(total)
	}
	if o.pid != 0 {
		if after, err := ReadProc(o.pid); err == nil {
			var served uint64
			for _, s := range stats {
				if s.Name == "gateway" {
					served, _, _, _, _ = s.Counts()
				}
			}
			f := NewProcFigures("gateway", o.pid, gwBefore, after, served)
			rep.Gateway = &f
			if o.compare {
				rep.Notes = append(rep.Notes, "gateway CPU covers its own slices only (it is idle while the direct slices run)")
			}
		}
	}
	if o.mockPid != 0 {
		if after, err := ReadProc(o.mockPid); err == nil {
			f := NewProcFigures("mock", o.mockPid, mockBefore, after, total)
			rep.Mock = &f
		}
	}
	for _, s := range rep.Targets {
		if s.SendLagUs.P99 > 1000 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: bench sent late (send lag p99 %s): the bench or the machine was saturated", s.Target, fmtUs(s.SendLagUs.P99)))
		}
	}
}

func finish(rep *Report, stdout, stderr io.Writer, jsonOut bool, plot string) int {
	if jsonOut {
		rep.WriteText(stderr)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	} else {
		rep.WriteText(stdout)
	}
	if plot != "" {
		f, err := os.Create(plot)
		if err == nil {
			err = errors.Join(rep.WritePlot(f), f.Close())
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench: plot:", err)
			return 1
		}
	}
	return 0
}

// prepareMock applies the scenario's mockStart and returns a function that
// restores every touched mock's previous config.
func prepareMock(mc MockControl, def string, sc *Scenario) (restore func(), err error) {
	bases := map[string]bool{}
	if len(sc.MockStart) > 0 {
		bases[def] = true
	}
	for _, p := range sc.MockPhases {
		bases[orDefault(p.Control, def)] = true
	}
	saved := map[string]json.RawMessage{}
	for b := range bases {
		if b == "" {
			return nil, errors.New("scenario steers the mock: pass -mock-control")
		}
		cfg, err := mc.Get(b)
		if err != nil {
			return nil, fmt.Errorf("mock control %s: %w", b, err)
		}
		saved[b] = cfg
	}
	if len(sc.MockStart) > 0 {
		if err := mc.Put(def, sc.MockStart); err != nil {
			return nil, err
		}
	}
	return func() {
		for b, cfg := range saved {
			_ = mc.Put(b, cfg)
		}
	}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// runPhases applies each phase at its offset from now.
func runPhases(mc MockControl, def string, phases []MockPhase, stderr io.Writer) <-chan struct{} {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for _, p := range phases {
			time.Sleep(time.Until(start.Add(time.Duration(p.At))))
			if err := mc.Put(orDefault(p.Control, def), p.Config); err != nil {
				fmt.Fprintln(stderr, "bench: mock phase:", err)
			}
		}
	}()
	return done
}
