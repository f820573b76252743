package policy

// The limiter's Redis keys, built once per workspace, credential and
// month.

import (
	"strconv"
	"time"
)

// keys returns the script's KEYS for k in now's month. They are built
// once per workspace, credential and month and then shared (read only):
// eight allocations per call otherwise, twice per request.
func (l *RedisLimiter) keys(k LimitKey, now time.Time) []string {
	m := monthIndex(now)
	ck := keyCacheKey{k.Workspace, k.CredentialID, m}
	l.keyMu.Lock()
	keys, ok := l.keyCache[ck]
	l.keyMu.Unlock()
	if ok {
		return keys
	}
	ws := l.prefix + "{" + k.Workspace + "}:"
	keys = []string{ws + "w", ws + "k:" + k.CredentialID, l.quotaKey(k.Workspace, "", m), l.quotaKey(k.Workspace, k.CredentialID, m)}
	l.keyMu.Lock()
	if len(l.keyCache) >= maxKeyCache || l.keyCache == nil {
		l.keyCache = make(map[keyCacheKey][]string) // start over: a bound, not an LRU
	}
	l.keyCache[ck] = keys
	l.keyMu.Unlock()
	return keys
}

// maxKeyCache bounds the keys cache (credentials × months seen).
const maxKeyCache = 4096

type keyCacheKey struct {
	workspace, credential string
	month                 int64
}

// quotaKey names a month's spend hash: the workspace's (credential "") or
// a managed key's own.
func (l *RedisLimiter) quotaKey(ws, credential string, month int64) string {
	var b [6]byte
	ym := strconv.AppendInt(b[:0], month/12*100+month%12+1, 10)
	if credential != "" {
		return l.prefix + "{" + ws + "}:kq:" + string(ym) + ":" + credential
	}
	return l.prefix + "{" + ws + "}:q:" + string(ym)
}

// quotaTTL is how long a quota hash written at now must live, in ms: until
// a day after now's month.
func quotaTTL(now time.Time) int64 {
	return nextMonthStart(now).Add(24 * time.Hour).Sub(now).Milliseconds()
}

func monthStart(month int64) time.Time {
	return time.Date(int(month/12), time.Month(month%12+1), 1, 0, 0, 0, 0, time.UTC)
}
