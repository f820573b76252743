package main

// Loading: the file, ${VAR} expansion, the persona files.

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// loadPersonas reads the file source's personas (inline items and the
// dir's files) into c; a no-op for another source. ParseConfig calls it
// after SetDefaults.
func (c *Config) loadPersonas() {
	c.personas, c.personasErr = nil, nil
	if c.Personas.Source == "file" {
		c.personas, c.personasErr = c.Personas.LoadFilePersonas()
	}
}

// LoadConfig reads, expands, strictly decodes, defaults and validates a
// config file, reporting every problem at once.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in scalar values (never in
// keys, and after YAML parsing, so a secret's characters cannot change the
// document's structure). An unset variable without default is an error.
func expandEnv(p *problems, n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			if v, ok := os.LookupEnv(m[1]); ok {
				return v
			}
			if m[2] != "" {
				return m[3]
			}
			p.add(strings.TrimPrefix(path, "."), "environment variable %s is not set (line %d)", m[1], n.Line)
			return ""
		})
		if n.Style != 0 { // quoted or explicitly tagged: stays what it says
			return
		}
		// An expanded plain scalar is resolved again as YAML would
		// (numbers, booleans), so ${PORT} can fill an int field.
		n.Tag = ""
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			expandEnv(p, n.Content[i+1], path+"."+n.Content[i].Value)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandEnv(p, c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.DocumentNode, yaml.AliasNode:
		for _, c := range n.Content {
			expandEnv(p, c, path)
		}
	}
}

// yamlFields maps the YAML keys of struct t to their types, descending
// into `yaml:",inline"` fields as the decoder does.
func yamlFields(t reflect.Type, into map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name == "" && strings.Contains(opts, "inline") && ft.Kind() == reflect.Struct {
			yamlFields(ft, into)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		into[name] = f.Type
	}
}
