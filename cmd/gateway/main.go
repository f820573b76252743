// Command gateway serves the persona chat API in front of LLM providers.
//
//	gateway [-config FILE] [-listen ADDR] [-admin-listen ADDR]
//	gateway -check-config [-config FILE]
//	gateway -print-default-config
//	gateway -version
//	gateway hash-key [KEY]      (reads the key from stdin when omitted)
//
// Without -config it runs the default config built into the binary (the
// repository's config.yaml): the mock provider, the demo key, no network.
package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/moonborn/edge/policy"
)

// defaultConfig is config.yaml, built in so that the binary runs from any
// directory without one. A test keeps it identical to the repository's.
//
//go:embed default-config.yaml
var defaultConfig []byte

const usageText = `Usage:
  gateway [-config FILE] [-listen ADDR] [-admin-listen ADDR]
  gateway -check-config [-config FILE]
  gateway -print-default-config
  gateway -version
  gateway -healthcheck [-config FILE] [-admin-listen ADDR]
  gateway hash-key [KEY]

Without -config the gateway runs its built-in default config (print it
with -print-default-config). Flags:
`

func main() {
	// Anything a library writes through the standard log package goes
	// through the redactor too.
	stdlog.SetOutput(newRedactor(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil))
}

// run is main without the process: it returns the exit code. ready, when
// not nil, receives the running app once both listeners accept (tests).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, ready func(*app)) int {
	if len(args) > 0 && args[0] == "hash-key" {
		return hashKey(args[1:], stdin, stdout, stderr)
	}
	f, code, ok := parseFlags(args, stdout, stderr)
	if !ok {
		return code
	}
	switch {
	case f.version:
		fmt.Fprintln(stdout, readBuildInfo())
		return 0
	case f.printDefault:
		_, _ = stdout.Write(defaultConfig)
		return 0
	}
	configName := f.configPath
	if configName == "" {
		configName = "(built-in default)"
	}
	cfg, err := loadConfig(f.configPath)
	if err == nil {
		f.override(cfg)
		err = cfg.Validate()
	}
	if err != nil {
		// A type error can quote the value it could not read: a secret.
		out := newRedactor(stderr, nil)
		fmt.Fprintf(out, "gateway: invalid config %s:\n", configName)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(out, "  %s\n", line)
		}
		return 1
	}
	if f.healthcheck {
		return checkHealth(cfg.Server.AdminListen, stderr)
	}
	if f.checkOnly {
		fmt.Fprintf(stdout, "config %s is valid\n", configName)
		return 0
	}
	return serveGateway(ctx, cfg, f, stderr, ready)
}

// flags are the command line's flags.
type flags struct {
	configPath, listen, adminListen               string
	checkOnly, printDefault, version, healthcheck bool
}

// parseFlags parses args; when it returns !ok the command is over with
// exit code code (-help, or a usage error).
func parseFlags(args []string, stdout, stderr io.Writer) (f flags, code int, ok bool) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.configPath, "config", "", "config file (default: the built-in default config)")
	fs.StringVar(&f.listen, "listen", "", "public API address (overrides server.listen)")
	fs.StringVar(&f.adminListen, "admin-listen", "", `admin address (overrides server.adminListen; "off" disables)`)
	fs.BoolVar(&f.checkOnly, "check-config", false, "report every problem of the config and exit (1 if any)")
	fs.BoolVar(&f.printDefault, "print-default-config", false, "write the built-in default config to stdout and exit")
	fs.BoolVar(&f.version, "version", false, "print the version and build and exit")
	fs.BoolVar(&f.healthcheck, "healthcheck", false, "ask the admin listener's /healthz of a running gateway (same config and flags); exit 0 if healthy (for Docker HEALTHCHECK)")
	usage := func(w io.Writer) {
		fs.SetOutput(w)
		fmt.Fprint(w, usageText)
		fs.PrintDefaults()
	}
	fs.Usage = func() {} // printed below, to stdout when asked for
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return f, 0, false
		}
		usage(stderr)
		return f, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gateway: unexpected argument %q\n", fs.Arg(0))
		return f, 2, false
	}
	return f, 0, true
}

// override puts the address flags over a loaded config: at start and at
// every reload.
func (f flags) override(c *Config) {
	if f.listen != "" {
		c.Server.Listen = f.listen
	}
	if f.adminListen != "" {
		c.Server.AdminListen = f.adminListen
	}
}

// serveGateway runs the gateway of a valid cfg until ctx ends.
func serveGateway(ctx context.Context, cfg *Config, f flags, stderr io.Writer, ready func(*app)) int {
	logs := newLogBuffer(stderr)
	defer logs.Close()
	log := newLogger(newRedactor(logs, cfg.secrets()), cfg.Log.Level)
	a, err := newApp(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err.Error())
		return 1
	}
	// SIGHUP and POST /admin/reload read the file again, flags on top.
	a.configFile(f.configPath, f.override)
	if err := a.serve(ctx, ready); err != nil {
		log.Error("serve failed", "err", err.Error())
		return 1
	}
	return 0
}

// checkHealth asks a running gateway's admin listener for /healthz. It
// exists because the distroless image has no curl for a HEALTHCHECK.
func checkHealth(adminListen string, stderr io.Writer) int {
	host, port, err := net.SplitHostPort(adminListen)
	if adminListen == "off" || err != nil {
		fmt.Fprintln(stderr, "gateway -healthcheck: the admin listener is off")
		return 1
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "gateway -healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "gateway -healthcheck: /healthz answered %d\n", resp.StatusCode)
		return 1
	}
	return 0
}

// loadConfig reads path, or the built-in default when path is empty.
func loadConfig(path string) (*Config, error) {
	if path == "" {
		return ParseConfig(defaultConfig)
	}
	return LoadConfig(path)
}

// hashKey prints the SHA-256 hash to put in auth.apiKeys[].sha256. Reading
// from stdin keeps the key out of shell history and process listings.
func hashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var key string
	switch len(args) {
	case 0:
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "gateway hash-key: %v\n", err)
			return 1
		}
		key = strings.TrimRight(line, "\r\n")
	case 1:
		key = args[0]
	default:
		fmt.Fprintln(stderr, "usage: gateway hash-key [KEY]")
		return 2
	}
	if key == "" {
		fmt.Fprintln(stderr, "gateway hash-key: empty key")
		return 2
	}
	fmt.Fprintln(stdout, policy.HashKey(key))
	return 0
}
