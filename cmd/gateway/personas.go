package main

// The persona source: made from config at start and at reload, swapped
// under the resolver.

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/moonborn/edge/gateway/persona"
)

// personaSource makes the persona source cfg.personas names: the HTTP
// origin, or the files Config loaded (returned too, to find what a
// reload changed; nil for http).
func personaSource(cfg *Config) (persona.Source, []persona.Persona, error) {
	if cfg.Personas.Source == "http" {
		hs, err := persona.NewHTTPSource(cfg.Personas.HTTP)
		if err != nil {
			return nil, nil, fmt.Errorf("personas: %w", err)
		}
		return hs, nil, nil
	}
	if cfg.personasErr != nil {
		return nil, nil, fmt.Errorf("personas: %w", cfg.personasErr)
	}
	return persona.NewFileSource(cfg.personas), cfg.personas, nil
}

// swapSource is the persona source the resolver keeps across reloads:
// a reload swaps what it reads from.
type swapSource struct {
	cur atomic.Pointer[sourceBox]
}

type sourceBox struct {
	src persona.Source
	// byID are the file source's personas, to find what a reload changed.
	byID map[string]*persona.Persona
}

// newSwapSource starts on src; ps are its personas for a file source
// (nil for http).
func newSwapSource(src persona.Source, ps []persona.Persona) *swapSource {
	s := &swapSource{}
	s.cur.Store(&sourceBox{src: src, byID: byID(ps)})
	return s
}

func byID(ps []persona.Persona) map[string]*persona.Persona {
	if ps == nil {
		return nil
	}
	m := make(map[string]*persona.Persona, len(ps))
	for i := range ps {
		m[ps[i].ID] = &ps[i]
	}
	return m
}

func (s *swapSource) Get(ctx context.Context, id string) (*persona.Persona, error) {
	return s.cur.Load().src.Get(ctx, id)
}

func (s *swapSource) personas() map[string]*persona.Persona { return s.cur.Load().byID }

func (s *swapSource) set(src persona.Source, byID map[string]*persona.Persona) {
	s.cur.Store(&sourceBox{src: src, byID: byID})
}
