package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
	"github.com/dualstore/dualstore/stores/s3"
)

// DefaultType is the type of a store entry that names none.
const DefaultType = "local"

// Registry maps a store type name ("local", "s3") to its backend's
// config type. It is a value, not a global: a program (or a test) builds
// the one it wants. A new backend is its package, with a stores.Config
// implementation, plus one Register line in DefaultRegistry.
type Registry struct {
	types     []string
	newConfig map[string]func() stores.Config
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{newConfig: map[string]func() stores.Config{}}
}

// DefaultRegistry returns a registry of every backend dualstore ships.
func DefaultRegistry() *Registry {
	r := NewRegistry()
	r.Register("local", func() stores.Config { return &local.Config{} })
	r.Register("s3", func() stores.Config { return &s3.Config{} })
	return r
}

// Register adds a backend: newConfig returns a new, empty config of its
// type, a pointer to a struct whose yaml tags are the entry's keys. A
// later registration of a type replaces the earlier one.
func (r *Registry) Register(typ string, newConfig func() stores.Config) {
	if _, ok := r.newConfig[typ]; !ok {
		r.types = append(r.types, typ)
	}
	r.newConfig[typ] = newConfig
}

// Types returns the registered type names, in registration order.
func (r *Registry) Types() []string { return slices.Clone(r.types) }

// keys returns the config keys of a backend: the yaml tags of its
// config's fields.
func (r *Registry) keys(typ string) []string {
	t := reflect.TypeOf(r.newConfig[typ]())
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if k, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); k != "" && k != "-" {
			out = append(out, k)
		}
	}
	return out
}

// typeOf returns the registered type of a config value, for a StoreConfig
// built in code with Options but no Type.
func (r *Registry) typeOf(c stores.Config) string {
	for _, typ := range r.types {
		if reflect.TypeOf(r.newConfig[typ]()) == reflect.TypeOf(c) {
			return typ
		}
	}
	return ""
}

// StoreConfig is one store of a tier: a name, a type, and the type's own
// options. In a config file it is one mapping: name, type and the
// backend's keys side by side (`{name: s, type: s3, bucket: chunks}`).
type StoreConfig struct {
	// Name is the store's name in logs, stats and messages; default
	// "<tier>-<index>".
	Name string `yaml:"name" json:"name"`
	// Type is a registered backend ("local", the default, or "s3").
	Type string `yaml:"type" json:"type"`
	// Options are the backend's keys. Complete decodes them from the
	// config file's entry, or takes them as set in code.
	Options stores.Config `yaml:"-" json:"-"`

	entry *yaml.Node // the entry as read, decoded by Complete
}

// UnmarshalYAML keeps the entry for Complete, which knows the registry
// and so the backend's keys; name and type are read now.
func (s *StoreConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a store is a mapping of keys (name, type, path, …)", n.Line)
	}
	var head struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	}
	if err := n.Decode(&head); err != nil {
		return err
	}
	*s = StoreConfig{Name: head.Name, Type: head.Type, entry: n}
	return nil
}

// MarshalJSON writes the entry as the config file has it: name, type and
// the backend's keys in one object.
func (s StoreConfig) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if s.Options != nil {
		b, err := json.Marshal(s.Options)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
	}
	m["name"], m["type"] = s.Name, s.Type
	return json.Marshal(m)
}

// complete resolves the entry's type, decodes its keys into the backend's
// config and completes that. key is "safety[0]".
func (s *StoreConfig) complete(r *Registry, key string) error {
	if s.Type == "" && s.Options != nil {
		s.Type = r.typeOf(s.Options)
	}
	if s.Type == "" {
		s.Type = DefaultType
	}
	newConfig, ok := r.newConfig[s.Type]
	if !ok {
		return fmt.Errorf("%s.type %q: unknown store type (want %s)", key, s.Type, strings.Join(r.types, " or "))
	}
	if s.Options == nil {
		s.Options = newConfig()
		if s.entry != nil {
			if err := r.decode(s.entry, s.Type, s.Options, key); err != nil {
				return err
			}
		}
	}
	return s.Options.Complete(key)
}

// decode reads the entry's keys into the backend's config strictly: a key
// of another backend is named as such (most likely a forgotten `type:`),
// any other unknown key as unknown, so a typo never silently falls back to
// a default.
func (r *Registry) decode(n *yaml.Node, typ string, into stores.Config, key string) error {
	own := append([]string{"name", "type"}, r.keys(typ)...)
	var unknown []string
	foreign := map[string][]string{} // other type → its keys found here
	var foreignTypes []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if slices.Contains(own, k) {
			continue
		}
		found := false
		for _, other := range r.types {
			if other != typ && slices.Contains(r.keys(other), k) {
				if _, seen := foreign[other]; !seen {
					foreignTypes = append(foreignTypes, other)
				}
				foreign[other] = append(foreign[other], k)
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	var errs []error
	for _, other := range foreignTypes {
		ks := foreign[other]
		where := key + "." + ks[0]
		if len(ks) > 1 {
			where = key + ": " + strings.Join(ks, ", ")
		}
		errs = append(errs, fmt.Errorf("%s: only for %s stores (missing `type: %s`?); not supported by %s stores", where, other, other, typ))
	}
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("%s.%s: unknown key for a %s store (its keys: %s)", key, k, typ, strings.Join(own, ", ")))
	}
	if len(errs) > 0 {
		return joinOneLine(errs)
	}
	if err := n.Decode(into); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: %s", key, strings.Join(te.Errors, "; "))
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
