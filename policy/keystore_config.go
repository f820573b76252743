package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/moonborn/edge/policy/ledger"
)

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
