package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/moonborn/edge/bench"
)

func TestMain_Usage(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"help", []string{"-help"}, 0, "-rate"},
		{"remote target refused", []string{"-url", "http://10.1.2.3:8080", "-rate", "10", "-n", "1"}, 2, "not a loopback address"},
		{"no bound", []string{"-url", "http://127.0.0.1:1", "-rate", "10", "-d", "0"}, 2, "at least one must bound the run"},
		{"bad target", []string{"-target", "upstream"}, 2, "-target must be gateway or direct"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := bench.Main(c.args, &out, &errb, make(chan os.Signal))
			if code != c.wantCode || !strings.Contains(errb.String(), c.wantErr) {
				t.Errorf("code %d stderr %q; want %d and %q", code, errb.String(), c.wantCode, c.wantErr)
			}
		})
	}
}

func TestMain_RunJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/personas/psn_demo/chat" || r.Header.Get("Authorization") != "Bearer mb_test_demo" {
			w.WriteHeader(404)
			return
		}
		w.Write([]byte(`{"content":"hi"}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	var out, errb bytes.Buffer
	code := bench.Main([]string{"-url", "http://" + ln.Addr().String(), "-rate", "200", "-n", "40", "-warmup", "0", "-quiet", "-json",
		"-gateway-pid", "0"}, &out, &errb, make(chan os.Signal))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out.String())
	}
	if len(rep.Targets) != 1 || rep.Targets[0].OK != 40 || rep.Targets[0].Failed != 0 || rep.Mode != "open" {
		t.Errorf("report %+v", rep.Targets)
	}
	if rep.Targets[0].LatencyUs.P50 <= 0 || rep.GoVersion == "" || rep.MachineCPUs < 1 {
		t.Errorf("figures missing: %+v", rep)
	}
}
