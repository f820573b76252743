package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// spool is the local append-only file that keeps batches the store
// refused: JSON lines in the JSONL ledger's encoding, one fsync per batch.
// It is emptied (truncated) only after every record in it was committed,
// so a crash at any point redelivers at worst records the store already
// has, which the idempotent insert ignores. Safe for concurrent use; mu
// serialises appends against a redelivery pass.
type spool struct {
	log  *slog.Logger
	path string

	mu          sync.Mutex
	f           *os.File
	buf         []byte // scratch for one encoded batch
	needNewline bool   // a failed or torn append may have left a partial line

	pending         atomic.Int64 // records in the file
	corrupt         atomic.Uint64
	spooled         atomic.Uint64
	lostUnencodable atomic.Uint64
}

// openSpool opens (creating, mode 0600) the spool at path and counts the
// records a previous process left in it.
func openSpool(path string, log *slog.Logger) (*spool, error) {
	if err := makeParentDir(path); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &spool{log: log, path: path, f: f}
	n, endsClean, err := countLines(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: read %s: %w", path, err)
	}
	s.pending.Store(n)
	s.needNewline = !endsClean
	return s, nil
}

// countLines counts the non-blank lines of r and reports whether its last
// byte is a newline (or it is empty).
func countLines(r io.ReadSeeker) (n int64, endsClean bool, err error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return 0, false, err
	}
	br := bufio.NewReaderSize(r, ledgerBufferSize)
	endsClean = true
	for {
		line, err := br.ReadSlice('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
		if len(line) > 0 {
			endsClean = line[len(line)-1] == '\n'
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return n, endsClean, nil
		default:
			return n, endsClean, err
		}
	}
}

// appendLocked writes recs and fsyncs; the caller holds mu. It returns
// how many records are now in the file and how many could not be encoded
// (counted in lostUnencodable); the others were lost to the write error.
func (s *spool) appendLocked(recs []UsageRecord) (n, bad int, err error) {
	b := s.buf[:0]
	if s.needNewline {
		b = append(b, '\n')
	}
	var errs []error
	for i := range recs {
		mark := len(b)
		var encErr error
		if b, encErr = appendUsageJSON(b, &recs[i]); encErr != nil {
			b = b[:mark]
			bad++
			errs = append(errs, fmt.Errorf("record %s: %w", recs[i].RequestID, encErr))
			continue
		}
		n++
	}
	s.buf = b
	s.lostUnencodable.Add(uint64(bad))
	if n == 0 {
		return 0, bad, errors.Join(errs...)
	}
	if _, err := s.f.Write(b); err != nil {
		s.needNewline = true
		return 0, bad, errors.Join(append(errs, fmt.Errorf("spool write: %w", err))...)
	}
	s.needNewline = false
	if err := s.f.Sync(); err != nil {
		// The bytes may not be durable; keep them counted, since a
		// redelivery will still find them unless the machine crashes.
		errs = append(errs, fmt.Errorf("spool fsync: %w", err))
	}
	s.pending.Add(int64(n))
	s.spooled.Add(uint64(n))
	return n, bad, errors.Join(errs...)
}

// deliver reads the whole spool, hands it to store in batches of at most
// batch records, and truncates the file once every batch was committed.
// It holds mu throughout, so no append lands between the last read and
// the truncate. A store error stops the pass and leaves the file as it
// was: the next pass sends everything again, which is safe because the
// store ignores request ids it has. onEmpty runs under mu after a
// successful truncate. Returns the records committed in this pass.
func (s *spool) deliver(batch int, store func([]UsageRecord) error, onEmpty func()) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending.Load() == 0 && !s.needNewline {
		onEmpty()
		return 0, nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	recs := make([]UsageRecord, 0, batch)
	delivered := 0
	err := decodeSpool(bufio.NewReaderSize(s.f, ledgerBufferSize), func(r UsageRecord) error {
		recs = append(recs, r)
		if len(recs) < batch {
			return nil
		}
		if err := store(recs); err != nil {
			return err
		}
		delivered += len(recs)
		recs = recs[:0]
		return nil
	}, func(line []byte, err error) {
		s.corrupt.Add(1)
		s.log.Error("usage ledger spool: undecodable line skipped", "path", s.path, "bytes", len(line), "err", err)
	})
	if err == nil && len(recs) > 0 {
		if err = store(recs); err == nil {
			delivered += len(recs)
		}
	}
	if err != nil {
		return delivered, err
	}
	if err := s.f.Truncate(0); err != nil {
		return delivered, fmt.Errorf("spool: truncate: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return delivered, fmt.Errorf("spool: fsync: %w", err)
	}
	s.pending.Store(0)
	s.needNewline = false
	onEmpty()
	return delivered, nil
}

// close fsyncs and closes the file.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.f.Sync(), s.f.Close())
}

// decodeSpool calls fn for every record in r, one JSON object per line,
// skipping blank lines and reporting undecodable ones (a line torn by a
// crash mid-append) to bad. It stops at the first error fn returns.
func decodeSpool(r *bufio.Reader, fn func(UsageRecord) error, bad func(line []byte, err error)) error {
	for {
		line, readErr := r.ReadBytes('\n')
		if t := bytes.TrimSpace(line); len(t) > 0 {
			var rec UsageRecord
			if err := json.Unmarshal(t, &rec); err != nil {
				bad(t, err)
			} else if err := fn(rec); err != nil {
				return err
			}
		}
		if readErr != nil {
			if errors.Is(readErr, io.EOF) {
				return nil
			}
			return fmt.Errorf("spool: read: %w", readErr)
		}
	}
}
