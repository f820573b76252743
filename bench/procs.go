package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (the kernel's sysconf
// answer); reading it would need cgo.
const clockTicks = 100

// ProcSample is one reading of another process's CPU and memory.
type ProcSample struct {
	// CPU is user + system time consumed so far.
	CPU time.Duration
	// Sys is the system (kernel) part of CPU: on loopback most of it is
	// the TCP stack, charged to whichever process writes.
	Sys time.Duration
	// RSS is the resident set now (VmRSS), bytes.
	RSS int64
	// PeakRSS is the largest resident set so far (VmHWM), bytes.
	PeakRSS int64
}

// ReadProc samples process pid from /proc.
func ReadProc(pid int) (ProcSample, error) {
	var s ProcSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	if s.CPU, s.Sys, err = parseStat(stat); err != nil {
		return s, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.RSS = statusKB(status, "VmRSS:") * 1024
	s.PeakRSS = statusKB(status, "VmHWM:") * 1024
	return s, nil
}

// ParseStatCPU returns utime + stime from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	cpu, _, err := parseStat(stat)
	return cpu, err
}

// parseStat returns utime + stime and stime alone.
func parseStat(stat []byte) (cpu, sys time.Duration, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("/proc stat: no command field")
	}
	f := bytes.Fields(stat[i+1:])
	// After ")": state is field 3, so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0, 0, errors.New("/proc stat: too few fields")
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return 0, 0, errors.New("/proc stat: bad utime/stime")
	}
	return time.Duration(u+s) * time.Second / clockTicks, time.Duration(s) * time.Second / clockTicks, nil
}

// statusKB returns the kB value of a /proc/PID/status line, or 0.
func statusKB(status []byte, key string) int64 {
	i := bytes.Index(status, []byte(key))
	if i < 0 {
		return 0
	}
	f := bytes.Fields(status[i+len(key):])
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return v
}

// SelfCPU is the bench's own user and system CPU time (getrusage), so a
// report can show the load generator was not the bottleneck.
func SelfCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// LoadAvg returns the first line of /proc/loadavg ("" when unreadable):
// the machine is shared, so each figure carries the load it was taken at.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return ""
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}

// MachineCPUs counts the machine's processors (/proc/cpuinfo), which
// runtime.NumCPU does not when the bench is pinned with taskset.
func MachineCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\nprocessor\t")) + btoi(bytes.HasPrefix(b, []byte("processor\t")))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
