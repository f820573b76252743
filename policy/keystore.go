package policy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/moonborn/edge/policy/ledger"
)

// Key store errors. The gateway maps ErrKeyNotFound to 404 and
// ErrInvalidKey to 422.
var (
	ErrKeyNotFound = errors.New("api key not found")
	ErrInvalidKey  = errors.New("invalid api key request")
	// ErrKeyStoreUnavailable wraps database failures of key management.
	ErrKeyStoreUnavailable = errors.New("key store unavailable")
)

// Key store defaults and bounds.
const (
	DefaultKeyPrefix       = "mb_live_"
	DefaultKeySyncInterval = time.Second
	// keySecretBytes of randomness make a key: 192 bits.
	keySecretBytes = 24
	// keyShownChars of the random part are kept in Prefix, for a person
	// to recognise a key in a list.
	keyShownChars = 4
	maxKeyName    = 200
)

// keyChangesChannel is the PostgreSQL NOTIFY channel a write to api_keys
// signals, so the other replicas sync at once instead of at their next
// poll.
const keyChangesChannel = "moonborn_api_keys"

// keyWriteLockKey serializes key writes on PostgreSQL (an advisory
// transaction lock), so revisions commit in the order they are numbered
// and a poller that has seen revision n has seen every revision below it.
// It is "moonbornkeys" read as a big-endian integer.
const keyWriteLockKey = 0x6d6f6f6e626f726b

// KeyStoreConfig is `auth.keyStore`: API keys created and revoked at run
// time through the admin API, stored (as hashes) in the ledger's database.
type KeyStoreConfig struct {
	// Enabled turns the store on. Default: on when ledger.driver is sqlite
	// or postgres (the store lives in that database); the jsonl ledger has
	// none, so true with it is an error.
	Enabled *bool `yaml:"enabled"`
	// SyncInterval is how often a replica reads the keys changed since
	// its last read. On PostgreSQL a NOTIFY also wakes every replica at
	// once; polling covers a lost notification. Default 1s; 50ms to 5s
	// (5s is the fleet-wide revocation bound).
	SyncInterval time.Duration `yaml:"syncInterval"`
	// Prefix starts every generated key, so a leaked key is recognisable
	// (secret scanners, logs). Default "mb_live_"; 2-16 characters of
	// [A-Za-z0-9_-].
	Prefix string `yaml:"prefix"`
}

// SetDefaults fills SyncInterval and Prefix.
func (c *KeyStoreConfig) SetDefaults() {
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultKeySyncInterval
	}
	if c.Prefix == "" {
		c.Prefix = DefaultKeyPrefix
	}
}

// On reports whether the store is enabled for a ledger driver.
func (c *KeyStoreConfig) On(ledgerDriver string) bool {
	if c.Enabled != nil {
		return *c.Enabled
	}
	return ledgerDriver == ledger.DriverSQLite || ledgerDriver == ledger.DriverPostgres
}

func (c *KeyStoreConfig) validate(prefix string, errs *[]error) {
	if c.SyncInterval < 50*time.Millisecond || c.SyncInterval > 5*time.Second {
		*errs = append(*errs, fmt.Errorf("%ssyncInterval: must be between 50ms and 5s", prefix))
	}
	if len(c.Prefix) < 2 || len(c.Prefix) > 16 || strings.Trim(c.Prefix, keyPrefixChars) != "" {
		*errs = append(*errs, fmt.Errorf("%sprefix: must be 2-16 characters of A-Z a-z 0-9 _ -", prefix))
	}
}

const keyPrefixChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// StoredKey is a managed API key as the admin API shows it: never the
// secret, only what identifies it.
type StoredKey struct {
	// ID names the credential in usage records ("key_" + 20 hex digits).
	ID        string `json:"id"`
	Workspace string `json:"workspace"`
	Name      string `json:"name"`
	// Prefix is the key's first characters, for recognition.
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"createdAt"`
	// ExpiresAt is when the key stops working; nil = never. Rotation sets
	// it to the end of the grace period.
	ExpiresAt *time.Time `json:"expiresAt"`
	// RevokedAt is when the key was revoked; nil = not revoked.
	RevokedAt *time.Time `json:"revokedAt"`
	// RotatedTo is the id of the key that replaced this one.
	RotatedTo string `json:"rotatedTo,omitempty"`
	// Limits are the key's own limits; nil uses the workspace's perKey.
	Limits *CredentialLimits `json:"limits"`

	sum [sha256.Size]byte
	rev int64
}

// Active reports whether the key authenticates at now.
func (k *StoredKey) Active(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// NewKey is a create request.
type NewKey struct {
	// Workspace the key acts for. Required.
	Workspace string
	// Name is a label for people (at most 200 characters). Optional.
	Name string
	// ExpiresAt, when set, is when the key stops working; in the future.
	ExpiresAt *time.Time
	// Limits are the key's own limits; nil uses the workspace's.
	Limits *CredentialLimits
}

// KeyUpdate changes a key. Nil fields stay as they are.
type KeyUpdate struct {
	Name *string
	// ExpiresAt sets the expiry; a zero time clears it.
	ExpiresAt *time.Time
	// Limits replaces the key's own limits; ClearLimits removes them.
	Limits      *CredentialLimits
	ClearLimits bool
}

// KeyStore holds the managed API keys: the rows of api_keys in the
// ledger's database, and an in-memory index of them by hash that
// authentication reads without touching the database. The index follows
// the table: every write through this store is applied to it at once, and
// a sync loop reads the rows changed elsewhere (another replica) every
// SyncInterval, woken early on PostgreSQL by a NOTIFY from the writer.
// Rows are never deleted (revocation is a timestamp), and every write
// gives its row the next revision number under a write lock, so "rows
// with rev > last seen" is the complete change set.
//
// Safe for concurrent use. Build it with OpenKeyStore; Close it.
type KeyStore struct {
	db      *sql.DB
	dialect ledger.Dialect
	pgCfg   *pgx.ConnConfig // PostgreSQL: for the LISTEN connection
	prefix  string
	every   time.Duration
	log     *slog.Logger

	// shards index keys by hash; the hash's first byte picks the shard,
	// so lookups spread over independent locks.
	shards [keyShards]keyShard
	// applyMu orders applying rows to the index and advancing seen.
	applyMu sync.Mutex
	seen    atomic.Int64 // highest revision applied
	count   atomic.Int64
	syncs   atomic.Uint64
	syncErr atomic.Uint64

	wake   chan struct{}
	stop   chan struct{}
	done   sync.WaitGroup
	closed sync.Once
}

const keyShards = 64

type keyShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*StoredKey
	_  [32]byte
}

// OpenKeyStore opens the key store in the database the ledger config
// names (sqlite or postgres), migrates it under the ledger's migration
// lock, loads every key and starts the sync loop. log may be nil.
func OpenKeyStore(ctx context.Context, ledgerCfg ledger.Config, cfg KeyStoreConfig, log *slog.Logger) (*KeyStore, error) {
	cfg.SetDefaults()
	var errs []error
	cfg.validate("", &errs)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ks := &KeyStore{prefix: cfg.Prefix, every: cfg.SyncInterval, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
	for i := range ks.shards {
		ks.shards[i].m = make(map[[sha256.Size]byte]*StoredKey)
	}
	db, err := ledger.OpenDB(ctx, ledgerCfg)
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if db.Postgres != nil {
		db.SetMaxOpenConns(4)
		db.SetMaxIdleConns(2)
	} else {
		db.SetMaxOpenConns(2)
	}
	ks.db, ks.dialect, ks.pgCfg = db.DB, db.Dialect, db.Postgres
	if err := ks.Sync(ctx); err != nil {
		ks.db.Close()
		return nil, err
	}
	ks.done.Add(1)
	go ks.syncLoop()
	if ks.pgCfg != nil {
		ks.done.Add(1)
		go ks.listenLoop()
	}
	return ks, nil
}

// Close stops the sync loops and closes the database handle.
func (ks *KeyStore) Close() error {
	var err error
	ks.closed.Do(func() {
		close(ks.stop)
		ks.done.Wait()
		err = ks.db.Close()
	})
	return err
}

// Len is the number of keys held (revoked and expired included).
func (ks *KeyStore) Len() int { return int(ks.count.Load()) }

// Revision is the highest key revision this replica has applied.
func (ks *KeyStore) Revision() int64 { return ks.seen.Load() }

// KeyStoreStats are the store's counters.
type KeyStoreStats struct {
	// Keys held and the highest revision applied.
	Keys, Revision int64
	// Syncs are the change reads done; SyncFailures those that failed.
	Syncs, SyncFailures uint64
}

// Stats returns the counters.
func (ks *KeyStore) Stats() KeyStoreStats {
	return KeyStoreStats{Keys: ks.count.Load(), Revision: ks.seen.Load(), Syncs: ks.syncs.Load(), SyncFailures: ks.syncErr.Load()}
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

func (ks *KeyStore) p(n int) string { return string(ks.dialect.Placeholder(nil, n)) }

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

// write runs fn in a transaction that holds the key write lock and gives
// fn the next revision; after commit the changed row is applied to the
// index at once and the other replicas are notified.
func (ks *KeyStore) write(ctx context.Context, fn func(tx *sql.Tx, rev int64) (id string, err error)) (*StoredKey, error) {
	tx, err := ks.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	defer func() { _ = tx.Rollback() }()
	if ks.pgCfg != nil {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.FormatInt(keyWriteLockKey, 10)+")"); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
	}
	var rev int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(rev), 0) + 1 FROM api_keys").Scan(&rev); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	id, err := fn(tx, rev)
	if err != nil {
		return nil, err
	}
	if ks.pgCfg != nil {
		// Delivered at commit, to every listening replica.
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify('"+keyChangesChannel+"', "+ks.p(1)+")", strconv.FormatInt(rev, 10)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	// Apply everything up to this revision, ours included, in order.
	if err := ks.Sync(ctx); err != nil {
		ks.log.Warn("key store: read back after write failed", "err", err.Error())
	}
	return ks.Get(ctx, id)
}

func (ks *KeyStore) insert(ctx context.Context, tx *sql.Tx, k *StoredKey, hash string, rev int64) error {
	lim, own := CredentialLimits{}, k.Limits != nil
	if own {
		lim = *k.Limits
	}
	q := "INSERT INTO api_keys (" + keyColumns + ") VALUES " + string(ks.dialect.AppendRow(nil, 1, keyColumnCount))
	_, err := tx.ExecContext(ctx, q, k.ID, k.Workspace, k.Name, k.Prefix, hash, k.CreatedAt.UnixMilli(), msOf(k.ExpiresAt), int64(0), "",
		own, lim.RequestsPerMinute, lim.RequestBurst, lim.TokensPerMinute, lim.MonthlyBudgetUsdMicros, lim.MonthlyTokens, rev)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	return nil
}

func msOf(t *time.Time) int64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// newSecret makes a key and its id.
func (ks *KeyStore) newSecret() (id, secret string, err error) {
	var b [keySecretBytes + 10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	return "key_" + hex.EncodeToString(b[keySecretBytes:]), ks.prefix + base64.RawURLEncoding.EncodeToString(b[:keySecretBytes]), nil
}

func checkNewKey(nk *NewKey, now time.Time) error {
	var errs []error
	if nk.Workspace == "" || len(nk.Workspace) > 128 || !utf8.ValidString(nk.Workspace) || strings.ContainsAny(nk.Workspace, "/{}\x00") {
		errs = append(errs, errors.New("workspace: required, at most 128 characters, no / { } or NUL"))
	}
	if len(nk.Name) > maxKeyName || !utf8.ValidString(nk.Name) || strings.IndexByte(nk.Name, 0) >= 0 {
		errs = append(errs, fmt.Errorf("name: at most %d characters of valid UTF-8", maxKeyName))
	}
	if nk.ExpiresAt != nil && !nk.ExpiresAt.After(now) {
		errs = append(errs, errors.New("expiresAt: must be in the future"))
	}
	if nk.Limits != nil {
		nk.Limits.setDefaults()
		if err := nk.Limits.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return nil
}

// Create stores a new key for nk.Workspace at now and returns it with
// its secret, which is not kept anywhere and cannot be shown again.
func (ks *KeyStore) Create(ctx context.Context, nk NewKey, now time.Time) (*StoredKey, string, error) {
	if err := checkNewKey(&nk, now); err != nil {
		return nil, "", err
	}
	id, secret, err := ks.newSecret()
	if err != nil {
		return nil, "", err
	}
	k := &StoredKey{ID: id, Workspace: nk.Workspace, Name: nk.Name, Prefix: secret[:len(ks.prefix)+keyShownChars],
		CreatedAt: now.UTC().Truncate(time.Millisecond), ExpiresAt: nk.ExpiresAt, Limits: nk.Limits}
	got, err := ks.write(ctx, func(tx *sql.Tx, rev int64) (string, error) {
		return id, ks.insert(ctx, tx, k, HashKey(secret), rev)
	})
	if err != nil {
		return nil, "", err
	}
	return got, secret, nil
}

// Get reads one key from the database.
func (ks *KeyStore) Get(ctx context.Context, id string) (*StoredKey, error) {
	k, err := scanKey(ks.db.QueryRowContext(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE id = "+ks.p(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	return k, nil
}

// List reads a workspace's keys, newest first.
func (ks *KeyStore) List(ctx context.Context, workspace string) ([]*StoredKey, error) {
	rows, err := ks.db.QueryContext(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE workspace = "+ks.p(1)+" ORDER BY created_at DESC, id", workspace)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	defer rows.Close()
	out := []*StoredKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	return out, nil
}

// locked reads a key inside a write transaction.
func (ks *KeyStore) locked(ctx context.Context, tx *sql.Tx, id string) (*StoredKey, error) {
	k, err := scanKey(tx.QueryRowContext(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE id = "+ks.p(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
	}
	return k, nil
}

// Revoke ends a key at now, on every replica within SyncInterval.
// Revoking a revoked key changes nothing and is not an error.
func (ks *KeyStore) Revoke(ctx context.Context, id string, now time.Time) (*StoredKey, error) {
	return ks.write(ctx, func(tx *sql.Tx, rev int64) (string, error) {
		k, err := ks.locked(ctx, tx, id)
		if err != nil {
			return "", err
		}
		if k.RevokedAt != nil {
			return id, nil
		}
		_, err = tx.ExecContext(ctx, "UPDATE api_keys SET revoked_at = "+ks.p(1)+", rev = "+ks.p(2)+" WHERE id = "+ks.p(3),
			now.UnixMilli(), rev, id)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
		return id, nil
	})
}

// Rotate replaces a key: a new key with the same workspace, name, expiry
// and limits, returned with its secret; the old key keeps working for
// grace (0 ends it now) and records the new key's id.
func (ks *KeyStore) Rotate(ctx context.Context, id string, grace time.Duration, now time.Time) (*StoredKey, string, error) {
	if grace < 0 || grace > 30*24*time.Hour {
		return nil, "", fmt.Errorf("%w: gracePeriod: must be between 0s and 720h", ErrInvalidKey)
	}
	newID, secret, err := ks.newSecret()
	if err != nil {
		return nil, "", err
	}
	_, err = ks.write(ctx, func(tx *sql.Tx, rev int64) (string, error) {
		old, err := ks.locked(ctx, tx, id)
		if err != nil {
			return "", err
		}
		if !old.Active(now) {
			return "", fmt.Errorf("%w: key %s is revoked or expired", ErrInvalidKey, id)
		}
		if old.RotatedTo != "" {
			return "", fmt.Errorf("%w: key %s was already rotated to %s", ErrInvalidKey, id, old.RotatedTo)
		}
		nk := &StoredKey{ID: newID, Workspace: old.Workspace, Name: old.Name, Prefix: secret[:len(ks.prefix)+keyShownChars],
			CreatedAt: now.UTC().Truncate(time.Millisecond), ExpiresAt: old.ExpiresAt, Limits: old.Limits}
		if err := ks.insert(ctx, tx, nk, HashKey(secret), rev); err != nil {
			return "", err
		}
		end := now.Add(grace).UnixMilli()
		if e := msOf(old.ExpiresAt); e != 0 && e < end {
			end = e
		}
		_, err = tx.ExecContext(ctx, "UPDATE api_keys SET expires_at = "+ks.p(1)+", rotated_to = "+ks.p(2)+", rev = "+ks.p(3)+" WHERE id = "+ks.p(4),
			end, newID, rev, id)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
		return newID, nil
	})
	if err != nil {
		return nil, "", err
	}
	k, err := ks.Get(ctx, newID)
	return k, secret, err
}

// Update changes a key's name, expiry or limits; every replica applies it
// within SyncInterval.
func (ks *KeyStore) Update(ctx context.Context, id string, u KeyUpdate, now time.Time) (*StoredKey, error) {
	var errs []error
	if u.Name != nil && (len(*u.Name) > maxKeyName || !utf8.ValidString(*u.Name) || strings.IndexByte(*u.Name, 0) >= 0) {
		errs = append(errs, fmt.Errorf("name: at most %d characters of valid UTF-8", maxKeyName))
	}
	if u.ExpiresAt != nil && !u.ExpiresAt.IsZero() && !u.ExpiresAt.After(now) {
		errs = append(errs, errors.New("expiresAt: must be in the future"))
	}
	if u.Limits != nil {
		u.Limits.setDefaults()
		if err := u.Limits.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return ks.write(ctx, func(tx *sql.Tx, rev int64) (string, error) {
		k, err := ks.locked(ctx, tx, id)
		if err != nil {
			return "", err
		}
		if u.Name != nil {
			k.Name = *u.Name
		}
		if u.ExpiresAt != nil {
			k.ExpiresAt = u.ExpiresAt
		}
		switch {
		case u.ClearLimits:
			k.Limits = nil
		case u.Limits != nil:
			k.Limits = u.Limits
		}
		lim, own := CredentialLimits{}, k.Limits != nil
		if own {
			lim = *k.Limits
		}
		q := "UPDATE api_keys SET name = " + ks.p(1) + ", expires_at = " + ks.p(2) + ", own_limits = " + ks.p(3) +
			", requests_per_minute = " + ks.p(4) + ", request_burst = " + ks.p(5) + ", tokens_per_minute = " + ks.p(6) +
			", monthly_budget_usd_micros = " + ks.p(7) + ", monthly_tokens = " + ks.p(8) + ", rev = " + ks.p(9) + " WHERE id = " + ks.p(10)
		_, err = tx.ExecContext(ctx, q, k.Name, msOf(k.ExpiresAt), own, lim.RequestsPerMinute, lim.RequestBurst, lim.TokensPerMinute,
			lim.MonthlyBudgetUsdMicros, lim.MonthlyTokens, rev, id)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrKeyStoreUnavailable, err)
		}
		return id, nil
	})
}
