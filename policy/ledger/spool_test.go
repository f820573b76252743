package ledger

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"log/slog"
)

func TestSpoolTornLineAndRedelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.jsonl")
	// A previous process appended two records and died mid-way through
	// a third.
	var b []byte
	for i := range 2 {
		r := ledgerRecord(i)
		b, _ = appendUsageJSON(b, &r)
	}
	b = append(b, `{"requestId":"req_torn","ti`...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := openSpool(path, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if s.pending.Load() != 3 || !s.needNewline {
		t.Fatalf("pending %d, needNewline %v", s.pending.Load(), s.needNewline)
	}
	if n, bad, err := s.appendLocked([]UsageRecord{ledgerRecord(2), {RequestID: "req_year", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}); n != 1 || bad != 1 || err == nil {
		t.Fatalf("append = %d, %d, %v", n, bad, err)
	}

	steps := []struct {
		name      string
		storeErr  error
		wantIDs   []string
		delivered int
		pending   int64
	}{
		{"store down: nothing truncated", errors.New("connection refused"), []string{"req_000000", "req_000001"}, 0, 4},
		{"store up: all delivered, torn line skipped", nil, []string{"req_000000", "req_000001", "req_000002"}, 3, 0},
		{"empty: nothing to do", nil, nil, 0, 0},
	}
	for _, st := range steps {
		var got []string
		emptied := false
		n, err := s.deliver(2, func(recs []UsageRecord) error {
			for _, r := range recs {
				got = append(got, r.RequestID)
			}
			return st.storeErr
		}, func() { emptied = true })
		if !errors.Is(err, st.storeErr) || n != st.delivered || !slices.Equal(got, st.wantIDs) ||
			s.pending.Load() != st.pending || emptied != (st.storeErr == nil) {
			t.Fatalf("%s: n %d, err %v, ids %v, pending %d, emptied %v", st.name, n, err, got, s.pending.Load(), emptied)
		}
	}
	if info, _ := os.Stat(path); info.Size() != 0 {
		t.Fatalf("spool size %d after delivery", info.Size())
	}
	if s.corrupt.Load() != 1 || !strings.Contains(logs.String(), "undecodable line skipped") {
		t.Fatalf("torn line not reported: %d, %s", s.corrupt.Load(), logs.String())
	}
}

func FuzzDecodeSpool(f *testing.F) {
	var seed []byte
	for i := range 3 {
		r := ledgerRecord(i)
		seed, _ = appendUsageJSON(seed, &r)
	}
	f.Add(seed)
	f.Add([]byte("\n\n{\"requestId\":\"x\"}\n{bad\n"))
	f.Add([]byte(`{"requestId":"x","time":"not a time"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var good []UsageRecord
		bad := 0
		err := decodeSpool(bufio.NewReader(bytes.NewReader(data)), func(r UsageRecord) error {
			good = append(good, r)
			return nil
		}, func([]byte, error) { bad++ })
		if err != nil {
			t.Fatal(err)
		}
		// Whatever decoded re-encodes and decodes to itself.
		var b []byte
		for i := range good {
			if b, err = appendUsageJSON(b, &good[i]); err != nil {
				return // a time out of the spool's range; never spooled
			}
		}
		var again []UsageRecord
		if err := decodeSpool(bufio.NewReader(bytes.NewReader(b)), func(r UsageRecord) error {
			again = append(again, r)
			return nil
		}, func(line []byte, err error) { t.Fatalf("re-encoded line %q: %v", line, err) }); err != nil {
			t.Fatal(err)
		}
		if len(again) != len(good) {
			t.Fatalf("%d records, re-read %d", len(good), len(again))
		}
		for i := range good {
			if again[i].RequestID != storableJSON(good[i].RequestID) || !again[i].Time.Equal(good[i].Time) ||
				again[i].CostUsdMicros != good[i].CostUsdMicros {
				t.Fatalf("record %d: %+v became %+v", i, good[i], again[i])
			}
		}
	})
}

// storableJSON is what a string becomes after a JSON round trip.
func storableJSON(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
