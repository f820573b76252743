package ledger

import (
	"errors"
	"testing"
	"time"
)

func TestParseUsageRange(t *testing.T) {
	now := time.Date(2030, 2, 14, 15, 30, 0, 0, time.FixedZone("X", 3600))
	d := func(y int, m time.Month, day, h int) time.Time { return time.Date(y, m, day, h, 0, 0, 0, time.UTC) }
	tests := []struct {
		name, from, to   string
		wantFrom, wantTo time.Time
		wantErr          string
	}{
		{"defaults: month to date", "", "", d(2030, 2, 1, 0), now.UTC(), ""},
		{"dates: to is the end of its day", "2030-01-01", "2030-01-31", d(2030, 1, 1, 0), d(2030, 2, 1, 0), ""},
		{"rfc3339 in another zone", "2030-01-01T01:00:00+01:00", "2030-01-01T12:00:00Z", d(2030, 1, 1, 0), d(2030, 1, 1, 12), ""},
		{"from only", "2030-02-14", "", d(2030, 2, 14, 0), now.UTC(), ""},
		{"from after to", "2030-03-01", "2030-02-01", time.Time{}, time.Time{}, "bad usage range: from must be before to"},
		{"same instant", "2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", time.Time{}, time.Time{}, "bad usage range: from must be before to"},
		{"garbage both", "yesterday", "2030-13-01", time.Time{}, time.Time{},
			"bad usage range: from: must be RFC 3339 or YYYY-MM-DD\nbad usage range: to: must be RFC 3339 or YYYY-MM-DD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, to, err := ParseUsageRange(tc.from, tc.to, now)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrBadUsageRange) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !f.Equal(tc.wantFrom) || !to.Equal(tc.wantTo) || f.Location() != time.UTC || to.Location() != time.UTC {
				t.Fatalf("= %v, %v, %v; want %v, %v", f, to, err, tc.wantFrom, tc.wantTo)
			}
		})
	}
}

func FuzzParseUsageRange(f *testing.F) {
	f.Add("2030-01-01", "2030-01-31")
	f.Add("2030-01-01T00:00:00.5+14:00", "")
	f.Add("", "0000-00-00")
	f.Fuzz(func(t *testing.T, from, to string) {
		now := time.Date(2030, 2, 14, 0, 0, 0, 0, time.UTC)
		fr, tt, err := ParseUsageRange(from, to, now)
		if err != nil {
			if !errors.Is(err, ErrBadUsageRange) {
				t.Fatalf("error %v does not wrap ErrBadUsageRange", err)
			}
			return
		}
		if !fr.Before(tt) || fr.Location() != time.UTC || tt.Location() != time.UTC {
			t.Fatalf("accepted %q, %q as %v, %v", from, to, fr, tt)
		}
	})
}
