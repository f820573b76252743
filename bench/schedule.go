package bench

import (
	"time"
)

// Clock is the time source of a run, so schedule tests use a fake one.
type Clock interface {
	Now() time.Time
	// SleepUntil returns at t or later; at once when t has passed.
	SleepUntil(t time.Time)
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// SleepUntil sleeps until t. The last stretch is spun on the scheduler
// (Gosched) because timer wake-ups on a loaded box are late by tens of
// microseconds, which at 5,000 req/s would bunch sends into bursts.
func (SystemClock) SleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		if d > 200*time.Microsecond {
			time.Sleep(d - 100*time.Microsecond)
			continue
		}
		time.Sleep(d)
		return
	}
}

// Schedule is an open-loop constant-rate timetable: request i is due at
// Start + i/Rate, whatever happened to the requests before it. Latency is
// measured from that due time, so a stalled target (or a stalled bench)
// shows up as latency instead of silently lowering the rate (coordinated
// omission).
type Schedule struct {
	Start time.Time
	// Rate is requests per second, > 0.
	Rate float64
	// Count bounds the number of requests; 0 means no bound.
	Count int
	// Duration bounds the span of due times; 0 means no bound.
	Duration time.Duration
}

// Due returns the due time of request i (0-based) and whether it is part
// of the schedule (within Count and Duration).
func (s Schedule) Due(i int) (time.Time, bool) {
	if s.Count > 0 && i >= s.Count {
		return time.Time{}, false
	}
	off := time.Duration(float64(i) * float64(time.Second) / s.Rate)
	if s.Duration > 0 && off >= s.Duration {
		return time.Time{}, false
	}
	return s.Start.Add(off), true
}

// Run calls launch(i, due) for every request of the schedule, sleeping on
// clk until each is due; a request already late is launched at once, with
// its original due time, so lateness counts against latency. Run stops early
// when stop is closed and returns how many it launched.
func (s Schedule) Run(clk Clock, stop <-chan struct{}, launch func(i int, due time.Time)) int {
	n := 0
	for i := 0; ; i++ {
		due, ok := s.Due(i)
		if !ok {
			return n
		}
		select {
		case <-stop:
			return n
		default:
		}
		clk.SleepUntil(due)
		launch(i, due)
		n++
	}
}

// Slicer interleaves two targets on one schedule: due times fall into
// alternating slices of Slice length, even slices to target 0 and odd ones
// to target 1, so both see the same rate and the same machine conditions
// within a fraction of a second of each other.
type Slicer struct {
	Start time.Time
	Slice time.Duration
}

// Target returns 0 or 1 for a request due at due.
func (s Slicer) Target(due time.Time) int {
	if s.Slice <= 0 {
		return 0
	}
	return int(due.Sub(s.Start)/s.Slice) & 1
}
