package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/moonborn/edge/internal/buildinfo"
)

// demoSystemPrompt is the demo persona's prompt, sent to direct targets so
// the upstream sees the same messages as through the gateway.
const demoSystemPrompt = "You are Moonborn's demo persona: concise, friendly and accurate."

// Main is the bench command: it parses args, runs, writes the report to
// stdout (text, or JSON with -json) and progress to stderr, and returns the
// exit code (0 ok, 1 run failed, 2 bad usage).
func Main(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.version {
		fmt.Fprintln(stdout, buildinfo.Line("bench"))
		return 0
	}
	var sc *Scenario
	if o.scenario != "" {
		if sc, err = LoadScenario(o.scenario); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
	}
	clients := o.applyScenario(sc)
	if o.hold > 0 {
		o.stream = true
		o.maxConns = max(o.maxConns, o.hold)
	}
	targets, err := o.targets(clients)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}

	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), MachineCPUs: MachineCPUs(),
		LoadAvg: LoadAvg(), Stream: o.stream, Rate: o.rate, Concurrency: o.conc}
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
	if !o.quiet {
		progress = stderr
	}
	var code int
	if o.hold > 0 {
		code = o.runHold(rep, targets[0], progress, stderr)
	} else {
		code = o.runMeasured(rep, sc, targets, progress, stderr, stop)
	}
	if code != 0 {
		return code
	}
	return finish(rep, stdout, stderr, o.jsonOut, o.plot)
}

// targets builds the targets to measure: the gateway (one variant per
// client, on the chosen route), the direct upstream, or both.
func (o *options) targets(clients []Client) ([]*Target, error) {
	spec := RequestSpec{UserText: o.userText, MaxOutputTokens: o.maxTokens, Stream: o.stream, Model: o.model, SystemPrompt: o.system}
	var gwVars []Variant
	pbody := PersonaBody(spec)
	gwProto := ProtoPersona
	for _, c := range clients {
		switch o.route {
		case "persona":
			gwVars = append(gwVars, Variant{Label: c.Label, URL: strings.TrimRight(o.gwURL, "/") + "/v1/personas/" + c.Persona + "/chat",
				Auth: "Bearer " + c.Key, Body: pbody})
		case "openai":
			gwProto = ProtoOpenAI
			ospec := spec
			ospec.Model, ospec.SystemPrompt = "persona/"+c.Persona, ""
			gwVars = append(gwVars, Variant{Label: c.Label, URL: strings.TrimRight(o.gwURL, "/") + "/v1/chat/completions",
				Auth: "Bearer " + c.Key, Body: OpenAIBody(ospec)})
		default:
			return nil, errors.New("-route must be persona or openai")
		}
	}
	dVars := []Variant{{Label: "direct", URL: strings.TrimRight(o.directURL, "/") + "/chat/completions", Auth: "Bearer x", Body: OpenAIBody(spec)}}

	var want []string
	switch {
	case o.compare:
		want = []string{"direct", "gateway"}
	case o.targetName == "gateway" || o.targetName == "direct":
		want = []string{o.targetName}
	default:
		return nil, errors.New("-target must be gateway or direct")
	}
	var targets []*Target
	for _, name := range want {
		proto, vars := gwProto, gwVars
		if name == "direct" {
			proto, vars = ProtoOpenAI, dVars
		}
		if !o.allowRemote {
			if err := CheckLoopback(vars[0].URL); err != nil {
				return nil, err
			}
		}
		t, err := NewTarget(name, proto, o.stream, vars, o.maxConns, o.timeout)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}
