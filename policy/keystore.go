package policy

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
