package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/moonborn/edge/policy/ledger"
)

func openTestKeyStore(t testing.TB) *KeyStore {
	t.Helper()
	dir := t.TempDir()
	ks, err := OpenKeyStore(context.Background(), ledger.Config{Driver: ledger.DriverSQLite, Path: filepath.Join(dir, "usage.db"),
		SpoolPath: filepath.Join(dir, "spool.jsonl")}, KeyStoreConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

func storeAuth(t testing.TB, ks *KeyStore) *Authenticator {
	t.Helper()
	a, err := NewAuthenticatorWith(AuthConfig{APIKeys: []APIKeyConfig{{ID: "key_cfg", Workspace: "wsp_cfg", SHA256: HashKey(testAPIKey)}}},
		AuthOptions{Keys: ks})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestKeyStoreLifecycle walks one key through create, expiry, update,
// rotation with grace and revocation, at fixed instants.
func TestKeyStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	ks := openTestKeyStore(t)
	a := storeAuth(t, ks)
	t0 := testNow
	exp := t0.Add(time.Hour)
	k, secret, err := ks.Create(ctx, NewKey{Workspace: "wsp_a", Name: "n", ExpiresAt: &exp,
		Limits: &CredentialLimits{RateLimits: RateLimits{RequestsPerMinute: 10}, MonthlyTokens: 500}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if k.Limits == nil || k.Limits.RequestBurst != 10 || k.Limits.MonthlyTokens != 500 {
		t.Fatalf("limits %+v (burst defaults to the rate)", k.Limits)
	}
	steps := []struct {
		name    string
		token   string
		at      time.Time
		wantErr error
	}{
		{"fresh key", secret, t0, nil},
		{"config key beside it", testAPIKey, t0, nil},
		{"just before expiry", secret, exp.Add(-time.Millisecond), nil},
		{"at expiry", secret, exp, errKeyExpired},
		{"unknown", secret + "x", t0, errUnknownKey},
	}
	for _, s := range steps {
		p, err := a.Authenticate([]byte(s.token), s.at)
		if !errors.Is(err, s.wantErr) || (err == nil && p.Workspace == "") {
			t.Fatalf("%s: %+v, %v; want %v", s.name, p, err, s.wantErr)
		}
		if s.token == secret && err == nil && (p.CredentialID != k.ID || p.Limits == nil || p.Limits.RequestsPerMinute != 10) {
			t.Fatalf("%s: principal %+v", s.name, p)
		}
	}

	// Clearing the expiry and the limits.
	zero := time.Time{}
	if _, err := ks.Update(ctx, k.ID, KeyUpdate{ExpiresAt: &zero, ClearLimits: true}, t0); err != nil {
		t.Fatal(err)
	}
	if p, err := a.Authenticate([]byte(secret), exp.Add(time.Hour)); err != nil || p.Limits != nil {
		t.Fatalf("after update: %+v %v", p, err)
	}

	// Rotation at t1 with a 10 minute grace.
	t1 := t0.Add(2 * time.Hour)
	nk, newSecret, err := ks.Rotate(ctx, k.ID, 10*time.Minute, t1)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		token string
		at    time.Time
		want  error
	}{
		{secret, t1.Add(10*time.Minute - time.Millisecond), nil},
		{secret, t1.Add(10 * time.Minute), errKeyExpired},
		{newSecret, t1.Add(time.Hour), nil},
	} {
		if _, err := a.Authenticate([]byte(s.token), s.at); !errors.Is(err, s.want) {
			t.Fatalf("rotation at %v: %v, want %v", s.at.Sub(t1), err, s.want)
		}
	}
	if _, _, err := ks.Rotate(ctx, k.ID, 0, t1); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("rotating a rotated key: %v", err)
	}
	if _, err := ks.Revoke(ctx, nk.ID, t1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate([]byte(newSecret), t1); !errors.Is(err, errKeyDisabled) {
		t.Fatalf("revoked: %v", err)
	}
	list, err := ks.List(ctx, "wsp_a")
	if err != nil || len(list) != 2 {
		t.Fatalf("list %v %v", list, err)
	}
	if _, err := ks.Get(ctx, "key_none"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	for _, bad := range []NewKey{
		{},
		{Workspace: "wsp/a"},
		{Workspace: "wsp_a", ExpiresAt: &t0},
		{Workspace: "wsp_a", Limits: &CredentialLimits{RateLimits: RateLimits{RequestBurst: 3}}},
		{Workspace: "wsp_a", Limits: &CredentialLimits{MonthlyTokens: -1}},
	} {
		if _, _, err := ks.Create(ctx, bad, t0); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("create %+v: %v", bad, err)
		}
	}
}

// TestKeyStoreSyncsWrites: a second store on the same database (another
// replica) sees a write at its next Sync.
func TestKeyStoreSyncsWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lc := ledger.Config{Driver: ledger.DriverSQLite, Path: filepath.Join(dir, "usage.db"), SpoolPath: filepath.Join(dir, "s.jsonl")}
	a, err := OpenKeyStore(ctx, lc, KeyStoreConfig{SyncInterval: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenKeyStore(ctx, lc, KeyStoreConfig{SyncInterval: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, secret, err := a.Create(ctx, NewKey{Workspace: "w"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if _, found, _ := b.authenticate(&sum, testNow); found {
		t.Fatal("b saw the key before syncing") // its loop waits 5s
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, err := b.authenticate(&sum, testNow); !found || err != nil {
		t.Fatalf("b after sync: %v %v", found, err)
	}
	if b.Revision() != a.Revision() || b.Len() != 1 {
		t.Fatalf("revisions %d %d, len %d", a.Revision(), b.Revision(), b.Len())
	}
}

// TestKeyBudgetLocal: a managed key's own monthly token budget refuses
// it once spent, leaves the workspace's other keys alone, and resets next
// month.
func TestKeyBudgetLocal(t *testing.T) {
	l, err := NewLocalLimiter(LimitsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	own := &CredentialLimits{MonthlyTokens: 100}
	k := LimitKey{Workspace: "w", CredentialID: "key_a", Own: own}
	d, _ := l.Admit(context.Background(), k, 10, testNow)
	if !d.Allowed {
		t.Fatal("first request refused")
	}
	_ = l.Settle(context.Background(), d.Reservation, 150, 1, testNow)
	if d, _ := l.Admit(context.Background(), k, 10, testNow); d.Allowed || d.Reason != ReasonQuotaTokens {
		t.Fatalf("over budget: %+v", d)
	}
	if d, _ := l.Admit(context.Background(), LimitKey{Workspace: "w", CredentialID: "key_b"}, 10, testNow); !d.Allowed {
		t.Fatal("another key of the workspace refused")
	}
	next := nextMonthStart(testNow)
	if d, _ := l.Admit(context.Background(), k, 10, next); !d.Allowed {
		t.Fatal("budget did not reset next month")
	}
	// Reload keeps the counters: the new table applies at once.
	if err := l.SetLimits(LimitsConfig{Default: WorkspaceLimits{RateLimits: RateLimits{RequestsPerMinute: 1}}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Admit(context.Background(), k, 10, testNow); d.Allowed {
		t.Fatal("counters lost on SetLimits")
	}
	if err := l.SetLimits(LimitsConfig{Default: WorkspaceLimits{RateLimits: RateLimits{RequestBurst: 1}}}); err == nil {
		t.Fatal("invalid limits accepted")
	}
}

// fillStore puts n managed keys straight into the store's index, as a
// sync of n rows would.
func fillStore(ks *KeyStore, n int) (sample []byte) {
	rows := make([]*StoredKey, 0, n)
	for i := range n {
		secret := "mb_live_bench_" + strconv.Itoa(i)
		rows = append(rows, &StoredKey{ID: fmt.Sprintf("key_%020d", i), Workspace: "wsp_" + strconv.Itoa(i%1000),
			sum: sha256.Sum256([]byte(secret)), rev: int64(i + 1)})
		if i == n/2 {
			sample = []byte(secret)
		}
	}
	ks.applyMu.Lock()
	ks.apply(rows)
	ks.applyMu.Unlock()
	return sample
}

func TestManagedKeyAuthAllocs(t *testing.T) {
	ks := openTestKeyStore(t)
	tok := fillStore(ks, 1000)
	a := storeAuth(t, ks)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Authenticate(tok, testNow); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("managed key path allocates %v times", allocs)
	}
}

// BenchmarkAuthenticateStore compares today's config-key lookup with
// lookups beside 100,000 managed keys (run with -cpu 1,2 for contention).
func BenchmarkAuthenticateStore(b *testing.B) {
	cfgOnly, err := NewAuthenticator(AuthConfig{APIKeys: []APIKeyConfig{{ID: "key_cfg", Workspace: "wsp_cfg", SHA256: HashKey(testAPIKey)}}})
	if err != nil {
		b.Fatal(err)
	}
	ks := openTestKeyStore(b)
	managed := fillStore(ks, 100_000)
	withStore := storeAuth(b, ks)
	cases := []struct {
		name  string
		a     *Authenticator
		token []byte
	}{
		{"ConfigKey/NoStore", cfgOnly, []byte(testAPIKey)},
		{"ConfigKey/Store100k", withStore, []byte(testAPIKey)},
		{"ManagedKey/Store100k", withStore, managed},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.a.Authenticate(c.token, testNow); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
