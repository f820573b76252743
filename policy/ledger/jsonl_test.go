package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonborn/edge/internal/testkit"
)

func testRecord(i int) UsageRecord {
	return UsageRecord{
		RequestID:     fmt.Sprintf("req_%05d", i),
		Time:          time.Date(2030, 1, 2, 3, 4, 5, i, time.FixedZone("CET", 3600)),
		Workspace:     "wsp_demo",
		CredentialID:  "key_demo",
		Persona:       "p_1",
		Model:         "gpt-4o-mini",
		Provider:      "openai-1",
		Stream:        i%2 == 0,
		InputTokens:   int64(i),
		OutputTokens:  3,
		CostUsdMicros: 41,
		LatencyMs:     812,
		Status:        200,
	}
}

// readLines parses every line of path as a UsageRecord, keeping the raw
// time text to check its format.
func readLines(t *testing.T, path string) ([]UsageRecord, []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []UsageRecord
	var times []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r UsageRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", len(recs)+1, err, sc.Text())
		}
		var raw struct{ Time string }
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		times = append(times, raw.Time)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatal("file does not end with a newline")
	}
	return recs, times
}

func TestJSONLLedgerConcurrentRecords(t *testing.T) {
	const n = 10_000
	path := filepath.Join(t.TempDir(), "nested", "usage.jsonl")
	// A small queue forces Records to wait on the writer.
	l, err := NewJSONL(Config{Path: path, QueueSize: 16, FlushInterval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const workers = 50
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				l.Record(testRecord(i))
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := l.Stats()
	if st.Written != n || st.WriteErrors != 0 || st.DroppedAfterClose != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if st.WaitedFull == 0 {
		t.Fatalf("no Record waited with a 16-slot queue and 10000 records: %+v", st)
	}

	recs, times := readLines(t, path)
	if len(recs) != n {
		t.Fatalf("%d lines, want %d", len(recs), n)
	}
	seen := make(map[string]bool, n)
	for i, r := range recs {
		var idx int
		if _, err := fmt.Sscanf(r.RequestID, "req_%05d", &idx); err != nil || seen[r.RequestID] {
			t.Fatalf("line %d: bad or duplicate request id %q", i+1, r.RequestID)
		}
		seen[r.RequestID] = true
		want := testRecord(idx)
		if !r.Time.Equal(want.Time) || r.Time.Location() != time.UTC {
			t.Fatalf("line %d: time %v, want %v in UTC", i+1, r.Time, want.Time)
		}
		if _, err := time.Parse(time.RFC3339Nano, times[i]); err != nil || !strings.HasSuffix(times[i], "Z") {
			t.Fatalf("line %d: time %q is not RFC3339Nano UTC", i+1, times[i])
		}
		r.Time = want.Time
		if r != want {
			t.Fatalf("line %d = %+v, want %+v", i+1, r, want)
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("file mode %v, want 0600", perm)
	}
}

func TestJSONLLedgerAppendsAndRecordAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))

	for round := range 2 { // the second open must append, not truncate
		l, err := NewJSONL(Config{Path: path}, log)
		if err != nil {
			t.Fatal(err)
		}
		l.Record(testRecord(round))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		l.Record(testRecord(99)) // must not panic
		if st := l.Stats(); st.DroppedAfterClose != 1 || st.Written != 1 {
			t.Fatalf("round %d stats = %+v", round, st)
		}
	}
	recs, _ := readLines(t, path)
	if len(recs) != 2 || recs[0].RequestID != "req_00000" || recs[1].RequestID != "req_00001" {
		t.Fatalf("records = %+v", recs)
	}
	if !strings.Contains(logs.String(), "req_00099") {
		t.Fatalf("drop after Close not logged: %s", logs.String())
	}
}

func TestJSONLLedgerFlushesWithoutClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	l, err := NewJSONL(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Record(testRecord(7))
	// The queue drains at once, so the writer flushes without waiting for
	// Close; poll for it (a bound, not a timing assertion).
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Written != 1 {
		if time.Now().After(deadline) {
			t.Fatal("record not flushed while the ledger is open")
		}
		time.Sleep(time.Millisecond)
	}
	if recs, _ := readLines(t, path); len(recs) != 1 || recs[0].RequestID != "req_00007" {
		t.Fatalf("records = %+v", recs)
	}
}

func TestNewJSONLLedgerErrors(t *testing.T) {
	dir := t.TempDir()
	fileAsDir := filepath.Join(dir, "file")
	if err := os.WriteFile(fileAsDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"path is a directory", Config{Path: dir}, []string{"usage ledger: open " + dir, "is a directory"}},
		{"parent is a file", Config{Path: filepath.Join(fileAsDir, "usage.jsonl")}, []string{"usage ledger: create directory"}},
		{"bad settings", Config{Path: filepath.Join(dir, "u.jsonl"), QueueSize: -1, FlushInterval: time.Hour},
			[]string{"queueSize: must be between 1 and 1000000", "flushInterval: must be between 1ms and 1m0s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewJSONL(tc.cfg, nil)
			if err == nil {
				l.Close()
				t.Fatal("NewJSONL succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLedgerConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.Driver != DriverSQLite || c.Path != "data/usage.db" || c.QueueSize != 10_000 || c.FlushInterval != 200*time.Millisecond {
		t.Fatalf("defaults = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// flakyFile fails writes while broken is set; it stands in for a full or
// failing disk, which a real file cannot be made into portably.
type flakyFile struct {
	mu     sync.Mutex
	broken bool
	data   bytes.Buffer
	synced bool
	closed bool
}

var errDiskFull = errors.New("no space left on device")

func (f *flakyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		// A partial write: the worst case for line integrity.
		n := len(p) / 2
		f.data.Write(p[:n])
		return n, errDiskFull
	}
	return f.data.Write(p)
}

func (f *flakyFile) Sync() error  { f.synced = true; return nil }
func (f *flakyFile) Close() error { f.closed = true; return nil }

func (f *flakyFile) setBroken(b bool) { f.mu.Lock(); f.broken = b; f.mu.Unlock() }

func TestJSONLLedgerWriteErrors(t *testing.T) {
	f := &flakyFile{broken: true}
	var logs bytes.Buffer
	l := newJSONL(Config{Path: "flaky", QueueSize: 4, FlushInterval: time.Millisecond},
		slog.New(slog.NewJSONHandler(&logs, nil)), f, false)

	l.Record(testRecord(1))
	testkit.Eventually(t, 5*time.Second, "the condition", func() bool { return l.Stats().WriteErrors == 1 })
	f.setBroken(false)
	l.Record(testRecord(2))
	l.Record(UsageRecord{RequestID: "req_badtime", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	l.Record(testRecord(3))

	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "2 records could not be written") {
		t.Fatalf("Close error = %v", err)
	}
	if st := l.Stats(); st.Written != 2 || st.WriteErrors != 2 {
		t.Fatalf("stats = %+v", st)
	}
	if !f.synced || !f.closed {
		t.Fatal("file not synced and closed")
	}
	if !strings.Contains(logs.String(), "no space left on device") || !strings.Contains(logs.String(), "req_badtime") {
		t.Fatalf("errors not logged: %s", logs.String())
	}
	// The partial line is terminated, so every complete line is a record.
	var ids []string
	for line := range strings.Lines(f.data.String()) {
		var r UsageRecord
		if json.Unmarshal([]byte(line), &r) == nil {
			ids = append(ids, r.RequestID)
		}
	}
	if strings.Join(ids, ",") != "req_00002,req_00003" {
		t.Fatalf("readable records = %v in %q", ids, f.data.String())
	}
}
func BenchmarkJSONLLedgerRecord(b *testing.B) {
	l, err := NewJSONL(Config{Path: filepath.Join(b.TempDir(), "usage.jsonl")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	r := testRecord(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Record(r)
		}
	})
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if st := l.Stats(); st.WriteErrors != 0 {
		b.Fatalf("stats = %+v", st)
	}
}

// stdUsageJSON is the reference encoding appendUsageJSON must equal.
func stdUsageJSON(r UsageRecord) ([]byte, error) {
	r.Time = r.Time.UTC()
	b, err := json.Marshal(r)
	return append(b, '\n'), err
}

func TestAppendUsageJSON(t *testing.T) {
	full := testRecord(3)
	full.Estimated = true
	full.ErrorCode = "upstream_timeout"
	full.Status = 504
	tests := []struct {
		name string
		r    UsageRecord
	}{
		{"typical", testRecord(1)},
		{"estimated with error code", full},
		{"zero", UsageRecord{}},
		{"prompt cache", UsageRecord{InputTokens: 3004, CacheReadTokens: 3000, CacheWrite5mTokens: 2, CacheWrite1hTokens: 1, CostUsdMicros: 9, CacheSavingsUsdMicros: -4}},
		{"escapes", UsageRecord{RequestID: "a\"b\\c\n\t\r\b\f\x00\x1f\x7f<>&", Persona: "héllo \u2028\u2029 😀", Model: "bad\xffutf8\xc3"}},
		{"negative numbers", UsageRecord{InputTokens: -1, OutputTokens: math.MinInt64, Status: -499}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendUsageJSON(nil, &tc.r)
			if err != nil {
				t.Fatal(err)
			}
			want, err := stdUsageJSON(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
	if _, err := appendUsageJSON(nil, &UsageRecord{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("year 10000 encoded")
	}
}

func FuzzAppendUsageJSON(f *testing.F) {
	f.Add("req_1", "wsp", "p\n\"", "gpt\xff", int64(12), int64(-3), int64(1893553445123456789), 200, true, "")
	f.Add("", "\u2028", "<&>", "😀", int64(0), int64(0), int64(0), 0, false, "bad_request")
	f.Fuzz(func(t *testing.T, id, wsp, persona, model string, in, out, unixNano int64, status int, est bool, code string) {
		r := UsageRecord{
			RequestID: id, Time: time.Unix(0, unixNano), Workspace: wsp, CredentialID: code + id,
			Persona: persona, Model: model, Provider: wsp + model, Stream: !est,
			InputTokens: in, OutputTokens: out, Estimated: est, CostUsdMicros: in ^ out,
			LatencyMs: out, Status: status, ErrorCode: code,
		}
		got, err := appendUsageJSON(nil, &r)
		want, stdErr := stdUsageJSON(r)
		if (err != nil) != (stdErr != nil) {
			t.Fatalf("error mismatch: ours %v, encoding/json %v", err, stdErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

// lineFile records whether every write it got ended at a line's end.
type lineFile struct {
	mu      sync.Mutex
	writes  int
	partial int
}

func (f *lineFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if len(p) == 0 || p[len(p)-1] != '\n' {
		f.partial++
	}
	return len(p), nil
}
func (f *lineFile) Sync() error  { return nil }
func (f *lineFile) Close() error { return nil }

// The writer fills its buffer many times between two ticks at high
// rates; each write still ends at a record's end, so a kill -9 between
// two writes never leaves half a record.
func TestJSONLLedgerWritesWholeLines(t *testing.T) {
	f := &lineFile{}
	l := newJSONL(Config{Path: "lines", QueueSize: 64, FlushInterval: time.Minute}, nil, f, false)
	const n = 3000 // about 10 buffers' worth
	for i := range n {
		l.Record(testRecord(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Written != n {
		t.Fatalf("written %d, want %d", st.Written, n)
	}
	if f.writes < 2 || f.partial != 0 {
		t.Fatalf("%d writes, %d of them ending mid-line", f.writes, f.partial)
	}
}

// A file left ending mid-line (a crash mid-write) gets the next record on
// a line of its own, not glued to the torn one.
func TestJSONLLedgerAfterTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	if err := os.WriteFile(path, []byte("{\"requestId\":\"req_whole\"}\n{\"requestId\":\"req_to"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := NewJSONL(Config{Path: path, QueueSize: 4, FlushInterval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Record(testRecord(7))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var rec map[string]any
	if len(lines) != 3 || json.Unmarshal([]byte(lines[2]), &rec) != nil || rec["requestId"] != testRecord(7).RequestID {
		t.Fatalf("file after a torn tail:\n%s", data)
	}
}
