package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad knob", []string{"-fail-status", "700"}, "failStatus:"},
		{"negative delay", []string{"-token-delay", "-1s"}, "tokenDelay:"},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
		{"unknown flag", []string{"-nope"}, "not defined"},
		{"empty key env", []string{"-api-key-env", "MOCKLLM_TEST_UNSET_KEY"}, "is empty"},
		{"negative cache ttl", []string{"-cache-ttl-5m", "-1s"}, "promptCacheTTL5m:"},
		{"negative cache minimum", []string{"-openai-min-cache-tokens", "-5"}, "openAIMinCacheTokens:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := slog.New(slog.NewJSONHandler(io.Discard, nil))
			err := run(append([]string{"-listen", "127.0.0.1:0"}, tc.args...), log, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRunServesUntilSignal(t *testing.T) {
	t.Setenv("MOCKLLM_TEST_KEY", "sk-from-env-0123456789")
	pr, pw := io.Pipe()
	log := slog.New(slog.NewJSONHandler(pw, nil))
	sig := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"-listen", "127.0.0.1:0", "-output-tokens", "3", "-api-key-env", "MOCKLLM_TEST_KEY",
			"-prompt-cache=false", "-cache-ttl-5m", "100ms", "-anthropic-min-cache-tokens", "50"}, log, sig)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr) // later log lines
	if strings.Contains(line, "sk-from-env") {
		t.Fatalf("start line logs the key: %s", line)
	}
	var start struct {
		Msg    string `json:"msg"`
		Addr   string `json:"addr"`
		Config struct {
			OutputTokens            int    `json:"outputTokens"`
			APIKeySet               bool   `json:"apiKeySet"`
			PromptCacheOff          bool   `json:"promptCacheOff"`
			PromptCacheTTL5m        string `json:"promptCacheTTL5m"`
			AnthropicMinCacheTokens int    `json:"anthropicMinCacheTokens"`
			OpenAIMinCacheTokens    int    `json:"openAIMinCacheTokens"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(line), &start); err != nil || start.Addr == "" || start.Config.OutputTokens != 3 || !start.Config.APIKeySet {
		t.Fatalf("start line %s: %v", line, err)
	}
	if c := start.Config; !c.PromptCacheOff || c.PromptCacheTTL5m != "100ms" || c.AnthropicMinCacheTokens != 50 || c.OpenAIMinCacheTokens != 1024 {
		t.Fatalf("cache knobs not taken: %s", line)
	}
	req, _ := http.NewRequest("POST", "http://"+start.Addr+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-from-env-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sig <- os.Interrupt
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after the signal", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after the signal")
	}
}
