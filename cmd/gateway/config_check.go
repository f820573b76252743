package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParseConfig is LoadConfig on bytes. Only a YAML syntax error stops it
// early; otherwise every problem is reported in one pass, each with its
// path and line: unknown keys, values of the wrong type, unset
// variables, then (on what could be read) ranges and references.
func ParseConfig(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("config: empty file")
	}
	doc := root.Content[0]
	var p problems
	expandEnv(&p, doc, "")
	lines := map[string]int{}
	checkNode(&p, doc, reflect.TypeOf(Config{}), "", lines)
	var cfg Config
	if err := doc.Decode(&cfg); err != nil && len(p) == 0 {
		// checkNode reads values as the decoder does; should they ever
		// disagree, the decoder's word is still reported.
		p = append(p, err)
	}
	reported := map[string]bool{}
	for _, e := range p {
		path, _, _ := strings.Cut(e.Error(), ": ")
		reported[path] = true
	}
	cfg.SetDefaults()
	cfg.loadPersonas()
	if err := cfg.Validate(); err != nil {
		for _, e := range unjoin(err) {
			path, _, _ := strings.Cut(e.Error(), ": ")
			if coveredBy(path, reported) {
				continue // a value already reported unreadable or unset, left at its default
			}
			if l := lineOf(path, lines); l > 0 {
				e = fmt.Errorf("%w (line %d)", e, l)
			}
			p = append(p, e)
		}
	}
	if len(p) > 0 {
		return nil, errors.Join(p...)
	}
	return &cfg, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// coveredBy reports whether path or a parent of it was reported already.
func coveredBy(path string, reported map[string]bool) bool {
	for p := path; p != ""; p = parentPath(p) {
		if reported[p] {
			return true
		}
	}
	return false
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// lineOf finds the line of path, or of its nearest parent in the file.
func lineOf(path string, lines map[string]int) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := lines[p]; ok {
			return l
		}
	}
	return 0
}

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	unmarshalerTy = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	yamlLinePrefx = regexp.MustCompile(`^(yaml: )?(line \d+: )?`)
)

// checkNode walks the document against the Go types: it reports every
// key that names no field and every value that cannot be read as its
// field's type, in words, and records the line of every path.
func checkNode(p *problems, n *yaml.Node, t reflect.Type, path string, lines map[string]int) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		if _, ok := lines[path]; !ok {
			lines[path] = n.Line
		}
	}
	if n.ShortTag() == "!!null" {
		return // as if absent: the default applies
	}
	at := func(format string, args ...any) {
		p.add(path, "%s (line %d)", fmt.Sprintf(format, args...), n.Line)
		// Reported: decode the rest as if the value were absent, so one
		// bad value neither stops the decoder nor hides what follows.
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	}
	if reflect.PointerTo(t).Implements(unmarshalerTy) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			at("%s", yamlLinePrefx.ReplaceAllString(err.Error(), ""))
		}
		return
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			at("%s is not a duration (e.g. 30s)", describe(n))
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			at("%s is not a duration (e.g. 30s)", describe(n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			at("%s where a section of keys is expected", describe(n))
			return
		}
		fields := map[string]reflect.Type{}
		yamlFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				p.add(sub, "unknown key (line %d)", k.Line)
				continue
			}
			checkNode(p, n.Content[i+1], ft, sub, lines)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			at("%s where a list is expected", describe(n))
			return
		}
		for i, c := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			checkNode(p, c, t.Elem(), sub, lines)
			if id := mappingValue(c, "id"); id != "" {
				// Validate names entries by id where ids are what people
				// search for (personas[psn_demo].defaultModel).
				lines[parentPath(path)+"["+id+"]"] = c.Line
				lines[path+"["+id+"]"] = c.Line
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			at("%s where a mapping is expected", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(p, n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value, lines)
		}
	case reflect.Interface:
	default:
		if n.Kind != yaml.ScalarNode {
			at("%s where %s is expected", describe(n), kindWord(t))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			at("%s is not %s", describe(n), kindWord(t))
		}
	}
}

// describe names a node for a message: a scalar by its text.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number ≥ 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a text value"
	}
	return "a " + t.String()
}

func mappingValue(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}
