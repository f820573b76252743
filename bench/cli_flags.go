package bench

import (
	"flag"
	"io"
	"time"
)

// options are the bench command's flags, after a scenario filled the
// ones not given explicitly.
type options struct {
	scenario    string
	gwURL       string
	key         string
	persona     string
	directURL   string
	model       string
	system      string
	targetName  string
	compare     bool
	slice       time.Duration
	rate        float64
	conc        int
	count       int
	dur         time.Duration
	warmup      time.Duration
	timeout     time.Duration
	maxInFlight int
	maxConns    int
	stream      bool
	route       string
	userText    string
	maxTokens   int
	pid         int
	mockPid     int
	hold        int
	holdFor     time.Duration
	holdRate    float64
	mockCtl     string
	jsonOut     bool
	plot        string
	quiet       bool
	allowRemote bool
	version     bool

	set map[string]bool // the flags given explicitly
}

// parseOptions reads args; err is flag's (flag.ErrHelp for -h), already
// reported on stderr.
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{set: map[string]bool{}}
	fs.StringVar(&o.scenario, "scenario", "", "scenario file (JSON, see bench/scenarios); flags given explicitly override it")
	fs.StringVar(&o.gwURL, "url", "http://127.0.0.1:8080", "gateway base URL")
	fs.StringVar(&o.key, "key", "mb_test_demo", "API key for the gateway")
	fs.StringVar(&o.persona, "persona", "psn_demo", "persona id")
	fs.StringVar(&o.directURL, "direct", "http://127.0.0.1:8081/v1", "upstream base URL for the direct baseline (OpenAI chat completions at {direct}/chat/completions)")
	fs.StringVar(&o.model, "model", "mock-1", "upstream model name in direct requests")
	fs.StringVar(&o.system, "system", demoSystemPrompt, "system prompt sent in direct requests (match the persona's)")
	fs.StringVar(&o.targetName, "target", "gateway", "gateway or direct (without -compare)")
	fs.BoolVar(&o.compare, "compare", false, "run direct and gateway on one schedule, interleaved in alternating slices, and report the added latency")
	fs.DurationVar(&o.slice, "slice", 250*time.Millisecond, "interleave period for -compare")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: requests per second on a fixed schedule (latency from the scheduled time)")
	fs.IntVar(&o.conc, "c", 0, "closed loop: concurrent workers (used when -rate is 0)")
	fs.IntVar(&o.count, "n", 0, "stop after this many requests (0: no bound)")
	fs.DurationVar(&o.dur, "d", 10*time.Second, "stop after this long (0: no bound)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded warm-up at the same load before measuring")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per request, from its scheduled time")
	fs.IntVar(&o.maxInFlight, "max-inflight", 20000, "open loop: requests in flight before new ones fail as bench_overload")
	fs.IntVar(&o.maxConns, "max-conns", 2048, "connections per target; a request waiting for one still counts its wait as latency (-hold opens as many as it needs)")
	fs.BoolVar(&o.stream, "stream", false, "ask for streamed answers")
	fs.StringVar(&o.route, "route", "persona", "gateway route: persona (/v1/personas/{id}/chat) or openai (/v1/chat/completions with model persona/{id}, the same persona)")
	fs.StringVar(&o.userText, "user-text", "Hello! Tell me something about the moon.", "userText of each request")
	fs.IntVar(&o.maxTokens, "max-tokens", 0, "maxOutputTokens / max_tokens (0: unset)")
	fs.IntVar(&o.pid, "gateway-pid", 0, "measure this process's CPU and RSS over the measured run (/proc)")
	fs.IntVar(&o.mockPid, "mock-pid", 0, "also measure the mock upstream's CPU per request it served (direct + via gateway): a same-run yardstick")
	fs.IntVar(&o.hold, "hold", 0, "hold this many streams open (slow mock) and report gateway RSS per open stream; needs -gateway-pid")
	fs.DurationVar(&o.holdFor, "hold-for", 3*time.Second, "with -hold: how long to keep the streams open after all are open")
	fs.Float64Var(&o.holdRate, "hold-rate", 2000, "with -hold: new streams per second")
	fs.StringVar(&o.mockCtl, "mock-control", "", "mockllm base URL (http://127.0.0.1:8081) for the scenario's mockStart/mockPhases")
	fs.BoolVar(&o.jsonOut, "json", false, "write the report as JSON on stdout (text goes to stderr)")
	fs.StringVar(&o.plot, "plot", "", "write a self-contained HTML latency plot to this file")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow non-loopback targets")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	return o, nil
}

// applyScenario fills from sc every option the command line did not set,
// and returns the clients to send as.
func (o *options) applyScenario(sc *Scenario) []Client {
	clients := []Client{{Label: "", Key: o.key, Persona: o.persona}}
	if sc == nil {
		return clients
	}
	apply := func(name string, fn func()) {
		if !o.set[name] {
			fn()
		}
	}
	if sc.Rate > 0 || sc.Concurrency > 0 {
		apply("rate", func() { o.rate = sc.Rate })
		apply("c", func() { o.conc = sc.Concurrency })
	}
	if sc.Count > 0 || sc.Duration > 0 {
		apply("n", func() { o.count = sc.Count })
		apply("d", func() { o.dur = time.Duration(sc.Duration) })
	}
	if sc.Warmup > 0 {
		apply("warmup", func() { o.warmup = time.Duration(sc.Warmup) })
	}
	if sc.Timeout > 0 {
		apply("timeout", func() { o.timeout = time.Duration(sc.Timeout) })
	}
	if sc.Stream {
		apply("stream", func() { o.stream = true })
	}
	if sc.Compare {
		apply("compare", func() { o.compare = true })
	}
	if sc.UserText != "" {
		apply("user-text", func() { o.userText = sc.UserText })
	}
	if sc.MaxOutputTokens > 0 {
		apply("max-tokens", func() { o.maxTokens = sc.MaxOutputTokens })
	}
	if len(sc.Clients) > 0 && !o.set["key"] && !o.set["persona"] {
		clients = ExpandClients(sc.Clients)
	}
	return clients
}
