package artifact

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/usererr"
)

// Repo is a Helm chart repository known by an alias, used by INSTALL
// helm/<alias>/<chart>.
type Repo struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Repos is the list of chart repositories kept in $K2_HOME/repositories.json.
type Repos struct {
	path  string
	Repos []Repo `json:"repositories"`
}

// ReposFile returns the path of the repositories file under a k2 home.
func ReposFile(home string) string { return filepath.Join(home, "repositories.json") }

// LoadRepos reads the repositories file at path; a missing file is empty.
func LoadRepos(path string) (*Repos, error) {
	r := &Repos{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading %s: %w", path, err), "fix or remove the file")
	}
	return r, nil
}

var repoName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// Add adds or replaces the alias name.
func (r *Repos) Add(name, rawURL string) error {
	if !repoName.MatchString(name) {
		return usererr.New(usererr.KindUsage, "invalid repository alias %q; use letters, digits, '.', '_' and '-'", name)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usererr.New(usererr.KindUsage, "invalid repository URL %q; use http(s)://host/path (for OCI charts use INSTALL oci://… directly)", rawURL)
	}
	for i := range r.Repos {
		if r.Repos[i].Name == name {
			r.Repos[i].URL = rawURL
			return nil
		}
	}
	r.Repos = append(r.Repos, Repo{Name: name, URL: rawURL})
	sort.Slice(r.Repos, func(i, j int) bool { return r.Repos[i].Name < r.Repos[j].Name })
	return nil
}

// Remove removes the alias name.
func (r *Repos) Remove(name string) error {
	for i := range r.Repos {
		if r.Repos[i].Name == name {
			r.Repos = append(r.Repos[:i], r.Repos[i+1:]...)
			return nil
		}
	}
	return usererr.New(usererr.KindUsage, "no repository %q; see k2 repo ls", name)
}

// URL returns the URL of alias name.
func (r *Repos) URL(name string) (string, bool) {
	if r == nil {
		return "", false
	}
	for _, e := range r.Repos {
		if e.Name == name {
			return e.URL, true
		}
	}
	return "", false
}

// Save writes the file.
func (r *Repos) Save() error {
	if r.Repos == nil {
		r.Repos = []Repo{}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(r.path, append(b, '\n'), 0o644)
}
