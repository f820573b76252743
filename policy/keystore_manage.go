package policy

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// keyWriteLockKey serializes key writes on PostgreSQL (an advisory
// transaction lock), so revisions commit in the order they are numbered
// and a poller that has seen revision n has seen every revision below it.
// It is "moonbornkeys" read as a big-endian integer.
const keyWriteLockKey = 0x6d6f6f6e626f726b

func (ks *KeyStore) p(n int) string { return string(ks.dialect.Placeholder(nil, n)) }

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
