package gateway

import "time"

// Limits are the public listener's size and time limits. config.yaml's
// server section holds them under these names: cmd/gateway reads this
// type from the file as it is (inline in its server section), and
// SetDefaults is the one place their defaults live.
type Limits struct {
	// MaxBodyBytes is the largest request body; default 1 MiB. Bodies
	// announced larger are refused with 413 before they are read.
	MaxBodyBytes int `yaml:"maxBodyBytes"`
	// ReadTimeout bounds reading one request; default 30s.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// WriteTimeout bounds writing a non-streaming reply; default 30s.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// IdleTimeout closes idle keep-alive connections; default 120s.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// StreamWriteTimeout bounds each write of a stream to the client (a
	// client that stops reading is dropped); default 30s.
	StreamWriteTimeout time.Duration `yaml:"streamWriteTimeout"`
	// PingInterval is the silence after which a stream gets ": ping";
	// default 15s.
	PingInterval time.Duration `yaml:"pingInterval"`
	// RequestTimeout bounds a non-streaming request's upstream work,
	// across all its attempts (504 when it passes); default 120s.
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// MaxStreamDuration bounds a stream from its upstream call to its
	// last event (an error event when it passes); default 30m.
	MaxStreamDuration time.Duration `yaml:"maxStreamDuration"`
}

// SetDefaults fills the zero fields with their defaults.
func (l *Limits) SetDefaults() {
	setDefault(&l.MaxBodyBytes, 1<<20)
	setDefault(&l.ReadTimeout, 30*time.Second)
	setDefault(&l.WriteTimeout, 30*time.Second)
	setDefault(&l.IdleTimeout, 120*time.Second)
	setDefault(&l.StreamWriteTimeout, 30*time.Second)
	setDefault(&l.PingInterval, 15*time.Second)
	setDefault(&l.RequestTimeout, 120*time.Second)
	setDefault(&l.MaxStreamDuration, 30*time.Minute)
}
