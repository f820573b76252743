package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// keyChangesChannel is the PostgreSQL NOTIFY channel a write to api_keys
// signals, so the other replicas sync at once instead of at their next
// poll.
const keyChangesChannel = "moonborn_api_keys"

const keyColumns = "id, workspace, name, prefix, sha256, created_at, expires_at, revoked_at, rotated_to, own_limits, " +
	"requests_per_minute, request_burst, tokens_per_minute, monthly_budget_usd_micros, monthly_tokens, rev"

const keyColumnCount = 16

type rowScanner interface{ Scan(dest ...any) error }

func scanKey(r rowScanner) (*StoredKey, error) {
	var (
		k                 StoredKey
		hash              string
		created, exp, rev int64
		revoked           int64
		own               bool
		lim               CredentialLimits
	)
	if err := r.Scan(&k.ID, &k.Workspace, &k.Name, &k.Prefix, &hash, &created, &exp, &revoked, &k.RotatedTo, &own,
		&lim.RequestsPerMinute, &lim.RequestBurst, &lim.TokensPerMinute, &lim.MonthlyBudgetUsdMicros, &lim.MonthlyTokens, &rev); err != nil {
		return nil, err
	}
	sum, ok := parseKeyHash(hash)
	if !ok {
		return nil, fmt.Errorf("api_keys row %s: bad hash", k.ID)
	}
	k.sum, k.rev = sum, rev
	k.CreatedAt = time.UnixMilli(created).UTC()
	if exp != 0 {
		t := time.UnixMilli(exp).UTC()
		k.ExpiresAt = &t
	}
	if revoked != 0 {
		t := time.UnixMilli(revoked).UTC()
		k.RevokedAt = &t
	}
	if own {
		k.Limits = &lim
	}
	return &k, nil
}

// Sync reads every row changed since the last one applied. The sync loop
// calls it; tests and the admin API may too.
func (ks *KeyStore) Sync(ctx context.Context) error {
	ks.applyMu.Lock()
	defer ks.applyMu.Unlock()
	rows, err := ks.db.QueryContext(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE rev > "+ks.p(1)+" ORDER BY rev", ks.seen.Load())
	if err != nil {
		ks.syncErr.Add(1)
		return fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	defer rows.Close()
	var got []*StoredKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			ks.syncErr.Add(1)
			return fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
		got = append(got, k)
	}
	if err := rows.Err(); err != nil {
		ks.syncErr.Add(1)
		return fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	ks.apply(got)
	ks.syncs.Add(1)
	return nil
}

// syncLoop polls every SyncInterval, and at once when woken.
func (ks *KeyStore) syncLoop() {
	defer ks.done.Done()
	t := time.NewTicker(ks.every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ks.stop:
			return
		case <-t.C:
		case <-ks.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ks.Sync(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			ks.log.Warn("key store: sync failed; keys stay as last read", "err", err.Error())
		case err == nil && failing:
			failing = false
			ks.log.Info("key store: sync works again")
		}
	}
}

// listenLoop keeps a PostgreSQL connection LISTENing on the change
// channel and wakes the sync loop on every notification. When the
// connection fails it reconnects after a second; polling covers the gap.
func (ks *KeyStore) listenLoop() {
	defer ks.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-ks.stop; cancel() }()
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, ks.pgCfg)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+keyChangesChannel)
			for err == nil {
				ks.poke() // anything may have changed while not listening
				_, err = conn.WaitForNotification(ctx)
			}
			_ = conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		ks.log.Debug("key store: listen connection lost; polling meanwhile", "err", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (ks *KeyStore) poke() {
	select {
	case ks.wake <- struct{}{}:
	default:
	}
}

const keyShards = 64

type keyShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*StoredKey
	_  [32]byte
}

// lookup is the hot path: one shard read lock and a map read.
func (ks *KeyStore) lookup(sum *[sha256.Size]byte) *StoredKey {
	sh := &ks.shards[sum[0]%keyShards]
	sh.mu.RLock()
	k := sh.m[*sum]
	sh.mu.RUnlock()
	return k
}

// authenticate resolves a key's hash at now: the principal of an active
// key, errKeyDisabled or errKeyExpired for a known inactive one, found
// false for a hash the store does not hold.
func (ks *KeyStore) authenticate(sum *[sha256.Size]byte, now time.Time) (p Principal, found bool, err error) {
	k := ks.lookup(sum)
	if k == nil {
		return Principal{}, false, nil
	}
	switch {
	case k.RevokedAt != nil:
		return Principal{}, true, errKeyDisabled
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return Principal{}, true, errKeyExpired
	}
	return Principal{Workspace: k.Workspace, CredentialID: k.ID, Kind: KindAPIKey, Limits: k.Limits}, true, nil
}

// apply puts rows into the index; rows older than what the index holds
// for their hash are ignored. Called with applyMu held.
func (ks *KeyStore) apply(rows []*StoredKey) {
	for _, k := range rows {
		sh := &ks.shards[k.sum[0]%keyShards]
		sh.mu.Lock()
		old := sh.m[k.sum]
		if old == nil || old.rev < k.rev {
			sh.m[k.sum] = k
			if old == nil {
				ks.count.Add(1)
			}
		}
		sh.mu.Unlock()
		if k.rev > ks.seen.Load() {
			ks.seen.Store(k.rev)
		}
	}
}
