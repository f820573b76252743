package main

// The process's loggers, all writing through the redactor.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// newLogger is the process's only way to a logger, and it writes only
// through the redactor.
func newLogger(w *redactor, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(logHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}), w})
}

// accessWriter is where the gateway writes its access lines: the
// logger's redactor, or nil (through the logger) when there is none.
func accessWriter(log *slog.Logger) io.Writer {
	if r := redactorOf(log); r != nil {
		return r
	}
	return nil
}

// logHandler is the JSON handler newLogger makes, remembering its
// redactor so that the gateway's access lines, which it encodes itself,
// go through the same one writer (redactorOf).
type logHandler struct {
	*slog.JSONHandler
	out *redactor
}

// redactorOf returns the redactor a newLogger logger writes to, or nil
// for any other logger.
func redactorOf(log *slog.Logger) *redactor {
	if h, ok := log.Handler().(logHandler); ok {
		return h.out
	}
	return nil
}

// adminLogger routes the admin server's fasthttp messages into slog (and
// so through the redactor) rather than to fasthttp's default, stderr.
type adminLogger struct{ log *slog.Logger }

func (l adminLogger) Printf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "fasthttp-admin")
}

// redisLogger adapts go-redis's logger to slog at debug level: outages are
// already reported by the limiter, once per change of state.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "redis")
}
