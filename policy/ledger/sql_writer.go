package ledger

// The SQL ledger's writer goroutine (batches, prepared inserts, the
// spool on failure) and the redelivery loop.

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"time"
)

// run is the writer goroutine, the only user of batch and args.
func (l *SQL) run() {
	defer close(l.done)
	l.q.drain(l.flushInterval, func(r *UsageRecord) bool {
		l.batch = append(l.batch, *r)
		return len(l.batch) >= l.batchSize
	}, l.flush)
	l.flush()
}

// flush commits the batch, or spools it when the store is down or the
// commit fails.
func (l *SQL) flush() {
	if len(l.batch) == 0 {
		return
	}
	defer func() {
		clear(l.batch) // drop string references
		l.batch = l.batch[:0]
	}()
	tried := false
	for {
		if !tried && !l.down.Load() {
			tried = true
			if l.tryStore() {
				return
			}
		}
		l.spool.mu.Lock()
		if !tried && !l.down.Load() {
			// The spool was emptied while we waited for it: the store is
			// back, try it first.
			l.spool.mu.Unlock()
			continue
		}
		break
	}
	l.down.Store(true)
	n, bad, err := l.spool.appendLocked(l.batch)
	l.spool.mu.Unlock()
	if err != nil {
		// bad records are counted by the spool; count the rest here.
		l.writeErrors.Add(uint64(len(l.batch) - n - bad))
		l.log.Error("usage ledger: spool write failed, records lost", "path", l.spool.path,
			"records", len(l.batch)-n, "err", err)
	}
}

// tryStore commits the batch, reporting success; a failure is counted
// and logged, and the caller spools.
func (l *SQL) tryStore() bool {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.writeTimeout)
	err := l.insert(ctx, l.batch, &l.args)
	cancel()
	l.observe(time.Since(start))
	if err == nil {
		l.written.Add(uint64(len(l.batch)))
		l.batches.Add(1)
		return true
	}
	l.storeErrors.Add(1)
	l.log.Warn("usage ledger: store write failed, spooling", "driver", l.dialect.name,
		"records", len(l.batch), "err", err)
	return false
}

func (l *SQL) observe(d time.Duration) {
	l.latencyNanos.Add(int64(d))
	for {
		m := l.latencyMaxNanos.Load()
		if int64(d) <= m || l.latencyMaxNanos.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// insert commits recs in one transaction, in statements of at most
// the dialect's rowsPerInsert rows, parking the dialect's yield between
// them. Request ids already stored are skipped.
// scratch is reused for the statement arguments.
func (l *SQL) insert(ctx context.Context, recs []UsageRecord, scratch *[]any) (err error) {
	defer func() {
		// A driver panic must not kill the process; the batch is spooled.
		if p := recover(); p != nil {
			err = fmt.Errorf("insert panicked: %v", p)
		}
	}()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for len(recs) > 0 {
		n := min(len(recs), l.dialect.rowsPerInsert)
		args := (*scratch)[:0]
		for i := range recs[:n] {
			args = l.dialect.appendUsageArgs(args, &recs[i])
		}
		if st := l.prepared(ctx, n); st != nil {
			_, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		} else {
			stmt := l.insertFull
			if n < l.dialect.rowsPerInsert {
				stmt = l.dialect.insertSQL(n)
			}
			_, err = tx.ExecContext(ctx, stmt, args...)
		}
		clear(args)
		*scratch = args[:0]
		if err != nil {
			return err
		}
		recs = recs[n:]
		if len(recs) > 0 && l.shouldYield(ctx) {
			time.Sleep(l.dialect.yield)
		}
	}
	return tx.Commit()
}

// prepared returns the insert statement for n rows, prepared once for
// the life of the ledger, or nil to run the SQL text unprepared. SQLite
// (modernc) parses and plans every unprepared statement, and a 32-row
// insert's parse was a third of the writer's CPU; database/sql keeps the
// statement prepared on each connection it was used on, so a transaction
// on the same connection parses nothing. The full size is always
// prepared; the shorter tails of batches only while there are few sizes
// to hold (SQLite's 32), not PostgreSQL's thousands (pgx caches those by
// text itself). A failed prepare falls back to the text, which reports
// the error in the transaction as before.
func (l *SQL) prepared(ctx context.Context, n int) *sql.Stmt {
	if n != l.dialect.rowsPerInsert && l.dialect.rowsPerInsert > 64 {
		return nil
	}
	l.stmtMu.Lock()
	defer l.stmtMu.Unlock()
	if st, ok := l.stmts[n]; ok {
		return st
	}
	text := l.insertFull
	if n < l.dialect.rowsPerInsert {
		text = l.dialect.insertSQL(n)
	}
	st, err := l.db.PrepareContext(ctx, text)
	if err != nil {
		return nil
	}
	if l.stmts == nil {
		l.stmts = make(map[int]*sql.Stmt)
	}
	l.stmts[n] = st
	return st
}

// shouldYield reports whether to park between two statements of a batch
// (see Dialect.yield): only for an in-process engine, only when the
// process has one P (with more, requests run on the others), not while
// records pile up in the queue (then the writer catches up first), and
// never past half of the batch's WriteTimeout.
func (l *SQL) shouldYield(ctx context.Context) bool {
	if l.dialect.yield <= 0 || runtime.GOMAXPROCS(0) != 1 || len(l.q.ch) >= l.batchSize {
		return false
	}
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > l.writeTimeout/2
}

// redeliverLoop offers the spool to the store at start and then every
// retryInterval while it holds records or the store is marked down.
func (l *SQL) redeliverLoop() {
	defer close(l.redeliverDone)
	t := time.NewTicker(l.retryInterval)
	defer t.Stop()
	for {
		if l.spool.pending.Load() > 0 || l.down.Load() {
			l.redeliver()
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// redeliver runs one pass over the spool. With the spool empty it just
// clears down, and the writer's next batch tests the store.
func (l *SQL) redeliver() {
	var args []any // the writer's scratch is the writer's
	n, err := l.spool.deliver(l.batchSize, func(recs []UsageRecord) error {
		ctx, cancel := context.WithTimeout(context.Background(), l.writeTimeout)
		defer cancel()
		return l.insert(ctx, recs, &args)
	}, func() {
		if l.down.Swap(false) {
			l.log.Info("usage ledger: store is back", "driver", l.dialect.name)
		}
	})
	l.redelivered.Add(uint64(n))
	if n > 0 {
		l.log.Info("usage ledger: spooled records redelivered", "records", n)
	}
	if err != nil {
		l.log.Warn("usage ledger: redelivery failed, will retry", "driver", l.dialect.name,
			"retryIn", l.retryInterval, "err", err)
	}
}
