package persona

import "context"

// Source is where a Resolver gets personas it does not hold. Get returns
// ErrNotFound when id does not exist; any other error means the source
// could not answer (the Resolver then serves a stale copy if it has one).
// The returned persona is shared and must not be modified.
type Source interface {
	Get(ctx context.Context, id string) (*Persona, error)
}

// FileSource serves a fixed set of personas, typically those of
// Config.LoadFilePersonas. It is safe for concurrent use; it never changes
// after construction (reloading means building a new one).
type FileSource struct {
	byID map[string]*Persona
}

// NewFileSource indexes personas by id; a later duplicate replaces an
// earlier one (Config.Validate rejects duplicates).
func NewFileSource(personas []Persona) *FileSource {
	s := &FileSource{byID: make(map[string]*Persona, len(personas))}
	for i := range personas {
		p := personas[i]
		s.byID[p.ID] = &p
	}
	return s
}

// Get returns the persona with id, or ErrNotFound.
func (s *FileSource) Get(_ context.Context, id string) (*Persona, error) {
	if p, ok := s.byID[id]; ok {
		return p, nil
	}
	return nil, ErrNotFound
}

// Len returns the number of personas held.
func (s *FileSource) Len() int { return len(s.byID) }
