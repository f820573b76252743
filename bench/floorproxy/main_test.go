package main

import (
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/moonborn/edge/providers/mock"
)

// The floor proxy really makes the upstream call: the mock's completion
// comes back through it.
func TestFloorProxiesToTheMock(t *testing.T) {
	var cfg mock.ServerConfig
	cfg.SetDefaults()
	m := mock.NewServer(cfg)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.Serve(mln) }()
	t.Cleanup(func() { _ = m.Shutdown() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler("http://" + mln.Addr().String() + "/v1/chat/completions")}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	status, body, err := fasthttp.Post(nil, "http://"+ln.Addr().String()+"/v1/personas/psn_demo/chat", nil)
	if err != nil || status != 200 || !strings.Contains(string(body), `"chat.completion"`) {
		t.Fatalf("status %d, err %v: %s", status, err, body)
	}
}
