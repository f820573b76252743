// Command mockllm runs the mock LLM upstream: an HTTP server speaking the
// OpenAI chat completions and Anthropic messages wire formats, with a flag
// per fault knob and per prompt-cache knob. A running instance is steered
// through GET/PUT /_mock/config (DELETE /_mock/cache forgets the cached
// prompts) and watched through GET /_mock/stats.
//
//	mockllm -listen 127.0.0.1:8081 -token-delay 20ms -output-tokens 50
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/moonborn/edge/providers/mock"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	err := run(os.Args[1:], log, sig)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp): // flag printed the usage
	case errors.Is(err, errVersion):
		fmt.Println(versionLine())
	case errors.Is(err, errUsage):
		os.Exit(2) // flag printed the problem and the usage
	default:
		log.Error("mockllm", "err", err.Error())
		os.Exit(1)
	}
}

var (
	errVersion = errors.New("version asked for")
	errUsage   = errors.New("bad usage")
)

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
	return "moonborn mockllm " + v + " (revision " + rev + at + ") " + runtime.Version()
}

// run serves until a value arrives on sig, then shuts down gracefully.
func run(args []string, log *slog.Logger, sig <-chan os.Signal) error {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	var cfg mock.ServerConfig
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	fs.DurationVar(&cfg.TimeToFirstToken, "ttft", 0, "wait before the first token (and before a non-streaming reply)")
	fs.DurationVar(&cfg.TokenDelay, "token-delay", 0, "wait between tokens")
	fs.IntVar(&cfg.OutputTokens, "output-tokens", mock.DefaultOutputTokens, "tokens per answer unless max_tokens cuts it")
	fs.IntVar(&cfg.FailStatus, "fail-status", 0, "answer with this HTTP status and the protocol's error body (0: off)")
	fs.IntVar(&cfg.FailCount, "fail-count", 0, "fail only the first N requests (0: all while -fail-status is set)")
	fs.DurationVar(&cfg.RetryAfter, "retry-after", 0, "retry-after sent on injected 429/503/529 (0: none)")
	fs.DurationVar(&cfg.StallFor, "stall", 0, "stall before answering; negative: until the client goes away")
	fs.IntVar(&cfg.CutAfterTokens, "cut-after", 0, "close the connection after N stream deltas / send half a non-stream body (0: off)")
	fs.IntVar(&cfg.ErrorEventAfterTokens, "error-after", 0, "send the protocol's mid-stream error event after N deltas (0: off)")
	fs.BoolVar(&cfg.ChoicesNull, "choices-null", false, `send "choices":null in the OpenAI usage chunk`)
	promptCache := fs.Bool("prompt-cache", true, "simulate the providers' prompt caches (Anthropic cache_control, OpenAI automatic)")
	fs.IntVar(&cfg.AnthropicMinCacheTokens, "anthropic-min-cache-tokens", mock.DefaultMinCacheTokens, "shortest prefix an Anthropic breakpoint caches")
	fs.IntVar(&cfg.OpenAIMinCacheTokens, "openai-min-cache-tokens", mock.DefaultMinCacheTokens, "prompt length from which OpenAI caches (in 128-token steps)")
	fs.DurationVar(&cfg.PromptCacheTTL5m, "cache-ttl-5m", 5*time.Minute, `lifetime of an Anthropic "5m" breakpoint`)
	fs.DurationVar(&cfg.PromptCacheTTL1h, "cache-ttl-1h", time.Hour, `lifetime of an Anthropic "1h" breakpoint`)
	fs.DurationVar(&cfg.PromptCacheTTLOpenAI, "cache-ttl-openai", 5*time.Minute, "how long an unused OpenAI cached prefix survives")
	fs.IntVar(&cfg.PromptCacheMaxEntries, "cache-max-entries", mock.DefaultPromptCacheMaxEntries, "cached prefixes kept, least recently used out first")
	apiKeyEnv := fs.String("api-key-env", "", "name of an environment variable holding the API key to require (empty: no auth)")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *version {
		return errVersion
	}
	cfg.PromptCacheOff = !*promptCache
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *apiKeyEnv != "" {
		cfg.APIKey = os.Getenv(*apiKeyEnv)
		if cfg.APIKey == "" {
			return fmt.Errorf("-api-key-env: %s is empty", *apiKeyEnv)
		}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := mock.NewServer(cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// ServerConfig's JSON form never carries the API key.
	shown, _ := json.Marshal(cfg)
	log.Info("mockllm listening", "addr", ln.Addr().String(), "config", json.RawMessage(shown))

	select {
	case s := <-sig:
		log.Info("mockllm shutting down", "signal", s.String())
	case err := <-served:
		return err
	}
	if err := srv.Shutdown(); err != nil {
		return err
	}
	return <-served
}
