package bench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// demoSystemPrompt is the demo persona's prompt, sent to direct targets so
// the upstream sees the same messages as through the gateway.
const demoSystemPrompt = "You are Moonborn's demo persona: concise, friendly and accurate."

// versionLine names the build: module version, VCS revision and time.
func versionLine() string {
	v, rev, at := "(devel)", "unknown", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = ", " + s.Value
			}
		}
	}
	return "moonborn bench " + v + " (revision " + rev + at + ") " + runtime.Version()
}

// Main is the bench command: it parses args, runs, writes the report to
// stdout (text, or JSON with -json) and progress to stderr, and returns the
// exit code (0 ok, 1 run failed, 2 bad usage).
func Main(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		scenario    = fs.String("scenario", "", "scenario file (JSON, see bench/scenarios); flags given explicitly override it")
		gwURL       = fs.String("url", "http://127.0.0.1:8080", "gateway base URL")
		key         = fs.String("key", "mb_test_demo", "API key for the gateway")
		persona     = fs.String("persona", "psn_demo", "persona id")
		directURL   = fs.String("direct", "http://127.0.0.1:8081/v1", "upstream base URL for the direct baseline (OpenAI chat completions at {direct}/chat/completions)")
		model       = fs.String("model", "mock-1", "upstream model name in direct requests")
		system      = fs.String("system", demoSystemPrompt, "system prompt sent in direct requests (match the persona's)")
		targetName  = fs.String("target", "gateway", "gateway or direct (without -compare)")
		compare     = fs.Bool("compare", false, "run direct and gateway on one schedule, interleaved in alternating slices, and report the added latency")
		slice       = fs.Duration("slice", 250*time.Millisecond, "interleave period for -compare")
		rate        = fs.Float64("rate", 0, "open loop: requests per second on a fixed schedule (latency from the scheduled time)")
		conc        = fs.Int("c", 0, "closed loop: concurrent workers (used when -rate is 0)")
		count       = fs.Int("n", 0, "stop after this many requests (0: no bound)")
		dur         = fs.Duration("d", 10*time.Second, "stop after this long (0: no bound)")
		warmup      = fs.Duration("warmup", 2*time.Second, "unrecorded warm-up at the same load before measuring")
		timeout     = fs.Duration("timeout", 30*time.Second, "per request, from its scheduled time")
		maxInFlight = fs.Int("max-inflight", 20000, "open loop: requests in flight before new ones fail as bench_overload")
		maxConns    = fs.Int("max-conns", 2048, "connections per target; a request waiting for one still counts its wait as latency (-hold opens as many as it needs)")
		stream      = fs.Bool("stream", false, "ask for streamed answers")
		route       = fs.String("route", "persona", "gateway route: persona (/v1/personas/{id}/chat) or openai (/v1/chat/completions with model persona/{id}, the same persona)")
		userText    = fs.String("user-text", "Hello! Tell me something about the moon.", "userText of each request")
		maxTokens   = fs.Int("max-tokens", 0, "maxOutputTokens / max_tokens (0: unset)")
		pid         = fs.Int("gateway-pid", 0, "measure this process's CPU and RSS over the measured run (/proc)")
		mockPid     = fs.Int("mock-pid", 0, "also measure the mock upstream's CPU per request it served (direct + via gateway): a same-run yardstick")
		hold        = fs.Int("hold", 0, "hold this many streams open (slow mock) and report gateway RSS per open stream; needs -gateway-pid")
		holdFor     = fs.Duration("hold-for", 3*time.Second, "with -hold: how long to keep the streams open after all are open")
		holdRate    = fs.Float64("hold-rate", 2000, "with -hold: new streams per second")
		mockCtl     = fs.String("mock-control", "", "mockllm base URL (http://127.0.0.1:8081) for the scenario's mockStart/mockPhases")
		jsonOut     = fs.Bool("json", false, "write the report as JSON on stdout (text goes to stderr)")
		plot        = fs.String("plot", "", "write a self-contained HTML latency plot to this file")
		quiet       = fs.Bool("quiet", false, "no progress lines")
		allowRemote = fs.Bool("allow-remote", false, "allow non-loopback targets")
		version     = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var sc *Scenario
	clients := []Client{{Label: "", Key: *key, Persona: *persona}}
	if *scenario != "" {
		var err error
		if sc, err = LoadScenario(*scenario); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		apply := func(name string, fn func()) {
			if !set[name] {
				fn()
			}
		}
		if sc.Rate > 0 || sc.Concurrency > 0 {
			apply("rate", func() { *rate = sc.Rate })
			apply("c", func() { *conc = sc.Concurrency })
		}
		if sc.Count > 0 || sc.Duration > 0 {
			apply("n", func() { *count = sc.Count })
			apply("d", func() { *dur = time.Duration(sc.Duration) })
		}
		if sc.Warmup > 0 {
			apply("warmup", func() { *warmup = time.Duration(sc.Warmup) })
		}
		if sc.Timeout > 0 {
			apply("timeout", func() { *timeout = time.Duration(sc.Timeout) })
		}
		if sc.Stream {
			apply("stream", func() { *stream = true })
		}
		if sc.Compare {
			apply("compare", func() { *compare = true })
		}
		if sc.UserText != "" {
			apply("user-text", func() { *userText = sc.UserText })
		}
		if sc.MaxOutputTokens > 0 {
			apply("max-tokens", func() { *maxTokens = sc.MaxOutputTokens })
		}
		if len(sc.Clients) > 0 && !set["key"] && !set["persona"] {
			clients = ExpandClients(sc.Clients)
		}
	}
	if *hold > 0 {
		*stream = true
		*maxConns = max(*maxConns, *hold)
	}
	spec := RequestSpec{UserText: *userText, MaxOutputTokens: *maxTokens, Stream: *stream, Model: *model, SystemPrompt: *system}

	var gwVars []Variant
	pbody := PersonaBody(spec)
	gwProto := ProtoPersona
	for _, c := range clients {
		switch *route {
		case "persona":
			gwVars = append(gwVars, Variant{Label: c.Label, URL: strings.TrimRight(*gwURL, "/") + "/v1/personas/" + c.Persona + "/chat",
				Auth: "Bearer " + c.Key, Body: pbody})
		case "openai":
			gwProto = ProtoOpenAI
			ospec := spec
			ospec.Model, ospec.SystemPrompt = "persona/"+c.Persona, ""
			gwVars = append(gwVars, Variant{Label: c.Label, URL: strings.TrimRight(*gwURL, "/") + "/v1/chat/completions",
				Auth: "Bearer " + c.Key, Body: OpenAIBody(ospec)})
		default:
			fmt.Fprintln(stderr, "bench: -route must be persona or openai")
			return 2
		}
	}
	dVars := []Variant{{Label: "direct", URL: strings.TrimRight(*directURL, "/") + "/chat/completions", Auth: "Bearer x", Body: OpenAIBody(spec)}}

	var want []string
	switch {
	case *compare:
		want = []string{"direct", "gateway"}
	case *targetName == "gateway" || *targetName == "direct":
		want = []string{*targetName}
	default:
		fmt.Fprintln(stderr, "bench: -target must be gateway or direct")
		return 2
	}
	var targets []*Target
	for _, name := range want {
		proto, vars := gwProto, gwVars
		if name == "direct" {
			proto, vars = ProtoOpenAI, dVars
		}
		if !*allowRemote {
			if err := CheckLoopback(vars[0].URL); err != nil {
				fmt.Fprintln(stderr, "bench:", err)
				return 2
			}
		}
		t, err := NewTarget(name, proto, *stream, vars, *maxConns, *timeout)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		targets = append(targets, t)
	}

	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), MachineCPUs: MachineCPUs(),
		LoadAvg: LoadAvg(), Stream: *stream, Rate: *rate, Concurrency: *conc}
	if sc != nil {
		rep.Scenario = sc.Name
	}
	stop := make(chan struct{})
	go func() {
		if _, ok := <-sig; ok {
			close(stop)
		}
	}()
	var progress io.Writer
	if !*quiet {
		progress = stderr
	}

	if *hold > 0 {
		if *pid == 0 {
			fmt.Fprintln(stderr, "bench: -hold needs -gateway-pid")
			return 2
		}
		rep.Mode = "hold"
		before, err := ReadProc(*pid)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		hf := &HoldFigures{Requested: *hold, RSSIdleMB: mb(before.RSS)}
		open, errs := Hold(targets[0], *hold, *holdRate, *holdFor, *timeout, func(open int) {
			if s, err := ReadProc(*pid); err == nil {
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
		if s, err := ReadProc(*pid); err == nil {
			hf.PeakRSSMB = mb(s.PeakRSS)
		}
		rep.Hold = hf
		rep.LoadAvgEnd = LoadAvg()
		return finish(rep, stdout, stderr, *jsonOut, *plot)
	}

	cfg := Config{Rate: *rate, Concurrency: *conc, Count: *count, Duration: *dur, Timeout: *timeout,
		MaxInFlight: *maxInFlight, Slice: *slice, Progress: progress}
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
		restore, err := prepareMock(mc, *mockCtl, sc)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer restore()
	}
	if *warmup > 0 {
		w := cfg
		w.Count, w.Duration, w.Progress = 0, *warmup, nil
		if _, _, err := Run(w, targets, SystemClock{}, stop); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	if sc != nil && len(sc.MockPhases) > 0 {
		phasesDone := runPhases(mc, *mockCtl, sc.MockPhases, stderr)
		defer func() { <-phasesDone }()
	}
	var gwBefore, mockBefore ProcSample
	for _, p := range []struct {
		pid int
		s   *ProcSample
	}{{*pid, &gwBefore}, {*mockPid, &mockBefore}} {
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
	rep.Bench = BenchCPU{UserSec: (u1 - u0).Seconds(), SysSec: (s1 - s0).Seconds()}
	if wall > 0 {
		rep.Bench.CoreFraction = (u1 - u0 + s1 - s0).Seconds() / wall.Seconds()
	}
	if total > 0 {
		rep.Bench.UsPerRequest = (u1 - u0 + s1 - s0).Seconds() * 1e6 / float64(total)
	}
	if *pid != 0 {
		if after, err := ReadProc(*pid); err == nil {
			var served uint64
			for _, s := range stats {
				if s.Name == "gateway" {
					served, _, _, _, _ = s.Counts()
				}
			}
			f := NewProcFigures("gateway", *pid, gwBefore, after, served)
			rep.Gateway = &f
			if *compare {
				rep.Notes = append(rep.Notes, "gateway CPU covers its own slices only (it is idle while the direct slices run)")
			}
		}
	}
	if *mockPid != 0 {
		if after, err := ReadProc(*mockPid); err == nil {
			f := NewProcFigures("mock", *mockPid, mockBefore, after, total)
			rep.Mock = &f
		}
	}
	for _, s := range rep.Targets {
		if s.SendLagUs.P99 > 1000 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: bench sent late (send lag p99 %s): the bench or the machine was saturated", s.Target, fmtUs(s.SendLagUs.P99)))
		}
	}
	return finish(rep, stdout, stderr, *jsonOut, *plot)
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
