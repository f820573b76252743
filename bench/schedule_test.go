package bench

import (
	"testing"
	"time"
)

// fakeClock advances only when slept on, and can be made to fall behind.
type fakeClock struct {
	now    time.Time
	sleeps int
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) SleepUntil(t time.Time) {
	if t.After(c.now) {
		c.now = t
		c.sleeps++
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestScheduleDue(t *testing.T) {
	cases := []struct {
		name  string
		s     Schedule
		i     int
		want  time.Duration
		inRun bool
	}{
		{"first at start", Schedule{Start: t0, Rate: 1000, Count: 10}, 0, 0, true},
		{"1000/s spacing", Schedule{Start: t0, Rate: 1000, Count: 10}, 7, 7 * time.Millisecond, true},
		{"count bound", Schedule{Start: t0, Rate: 1000, Count: 10}, 10, 0, false},
		{"duration bound", Schedule{Start: t0, Rate: 100, Duration: time.Second}, 100, 0, false},
		{"last within duration", Schedule{Start: t0, Rate: 100, Duration: time.Second}, 99, 990 * time.Millisecond, true},
		{"fractional rate no drift", Schedule{Start: t0, Rate: 3}, 300000, 100000 * time.Second, true},
		{"5000/s", Schedule{Start: t0, Rate: 5000}, 12345, 2469 * time.Millisecond, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			due, ok := c.s.Due(c.i)
			if ok != c.inRun {
				t.Fatalf("in run = %v, want %v", ok, c.inRun)
			}
			if ok && due.Sub(t0) != c.want {
				t.Errorf("due at +%v, want +%v", due.Sub(t0), c.want)
			}
		})
	}
}

func TestScheduleRunOpenLoop(t *testing.T) {
	cases := []struct {
		name string
		// slow is how long each launch takes on the fake clock: an open loop
		// must keep the timetable anyway and report lateness as latency.
		slow      time.Duration
		wantN     int
		wantLate  time.Duration // lateness of the last launch vs its due time
		wantSleep bool
	}{
		{"on time", 0, 50, 0, true},
		{"target slower than schedule", 3 * time.Millisecond, 50, 49*3*time.Millisecond - 49*time.Millisecond, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := &fakeClock{now: t0}
			s := Schedule{Start: t0, Rate: 1000, Count: 50}
			var dues []time.Time
			var late time.Duration
			n := s.Run(clk, nil, func(i int, due time.Time) {
				dues = append(dues, due)
				late = clk.now.Sub(due)
				clk.now = clk.now.Add(c.slow) // a closed loop would wait here
			})
			if n != c.wantN || len(dues) != c.wantN {
				t.Fatalf("launched %d, want %d", n, c.wantN)
			}
			for i, d := range dues {
				if d.Sub(t0) != time.Duration(i)*time.Millisecond {
					t.Fatalf("request %d due +%v: the timetable moved", i, d.Sub(t0))
				}
			}
			if late != c.wantLate {
				t.Errorf("last request launched %v late, want %v", late, c.wantLate)
			}
			if (clk.sleeps > 0) != c.wantSleep {
				t.Errorf("sleeps = %d", clk.sleeps)
			}
		})
	}
}

func TestScheduleStop(t *testing.T) {
	clk := &fakeClock{now: t0}
	stop := make(chan struct{})
	n := Schedule{Start: t0, Rate: 100}.Run(clk, stop, func(i int, _ time.Time) {
		if i == 4 {
			close(stop)
		}
	})
	if n != 5 {
		t.Errorf("launched %d after stop at the 5th, want 5", n)
	}
}

func TestSlicer(t *testing.T) {
	s := Slicer{Start: t0, Slice: 250 * time.Millisecond}
	cases := []struct {
		name string
		off  time.Duration
		want int
	}{
		{"first slice", 0, 0}, {"end of first", 249 * time.Millisecond, 0}, {"second", 250 * time.Millisecond, 1},
		{"third", 600 * time.Millisecond, 0}, {"fourth", 999 * time.Millisecond, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := s.Target(t0.Add(c.off)); got != c.want {
				t.Errorf("target %d, want %d", got, c.want)
			}
		})
	}
}
