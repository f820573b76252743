package gateway

import (
	"errors"
	"fmt"
)

// State is the part of the configuration a request runs on: who may
// call, which personas and models exist, and their prices. A request
// loads the Server's current State once, when it starts, and uses that
// snapshot to its end, so a reload (SetState) never changes a request or
// a stream already running; the next request sees the new State. A State
// is immutable once handed to the Server.
type State struct {
	// Auth authenticates callers. Required.
	Auth Authenticator
	// Personas resolves persona ids. Required.
	Personas PersonaResolver
	// Models maps public model ids. Required, non-empty.
	Models map[string]*Model
	// Version names the configuration (the config file's hash), for
	// /admin/status and logs. Optional.
	Version string

	// metrics are the per-model metric children, resolved once per State.
	metrics map[string]*modelMetrics
}

func (st *State) check() error {
	var errs []error
	if st.Auth == nil {
		errs = append(errs, errors.New("gateway: Auth is required"))
	}
	if st.Personas == nil {
		errs = append(errs, errors.New("gateway: Personas is required"))
	}
	if len(st.Models) == 0 {
		errs = append(errs, errors.New("gateway: at least one model is required"))
	}
	for id, m := range st.Models {
		if m == nil || m.Provider == nil || m.MaxOutputTokens < 1 {
			errs = append(errs, fmt.Errorf("gateway: model %q needs a provider and MaxOutputTokens ≥ 1", id))
		}
	}
	return errors.Join(errs...)
}

// State returns the current snapshot. Code serving a request calls it
// once, at the request's start, and keeps what it got.
func (s *Server) State() *State { return s.state.Load() }

// SetState checks st and makes it the State of every request that starts
// from now on; requests and streams already running finish on theirs. A
// State that fails the checks is refused and the current one stays.
func (s *Server) SetState(st State) error {
	if err := st.check(); err != nil {
		return err
	}
	st.metrics = s.opts.Metrics.forModels(st.Models)
	s.state.Store(&st)
	return nil
}
