package osinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"k2.dev/k2/provision/machineconfig"
)

// ErrNoConfig is what a source returns when it holds no machine config.
var ErrNoConfig = errors.New("no machine config")

// A Source is one place a machine config may come from.
type Source interface {
	// Name is how the console names the source ("kernel command line").
	Name() string
	// Fetch returns the document, or an error wrapping ErrNoConfig when
	// the source has none; any other error means it has one that could not
	// be read yet (the network is not up, the server answered 500).
	Fetch(ctx context.Context) ([]byte, error)
}

// Kernel command line parameters k2 init reads.
const (
	// CmdlineConfig is k2.config=URL: fetch the machine config over HTTP(S).
	CmdlineConfig = "k2.config"
	// CmdlineIMDS is k2.imds=URL: the instance metadata endpoint to ask
	// (for tests; on EC2 the default address is used).
	CmdlineIMDS = "k2.imds"
)

// Cmdline is the kernel command line parsed into key=value parameters.
type Cmdline map[string]string

// ParseCmdline splits a kernel command line; a bare word maps to "".
// Double quotes group a value with spaces, as the kernel allows.
func ParseCmdline(s string) Cmdline {
	out := Cmdline{}
	var word strings.Builder
	inQuote := false
	flush := func() {
		if word.Len() == 0 {
			return
		}
		k, v, _ := strings.Cut(word.String(), "=")
		out[k] = strings.ReplaceAll(v, `"`, "")
		word.Reset()
	}
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			word.WriteRune(r)
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			flush()
		default:
			word.WriteRune(r)
		}
	}
	flush()
	return out
}

// ReadCmdline reads /proc/cmdline (or path).
func ReadCmdline(path string) Cmdline {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cmdline{}
	}
	return ParseCmdline(string(b))
}

// CmdlineSource reads k2.config=URL from the kernel command line and
// fetches that URL.
type CmdlineSource struct {
	Cmdline Cmdline
	Client  *http.Client
	// Ready, if set, is called before the fetch (k2 init waits for the
	// network there); its error is the fetch's.
	Ready func(context.Context) error
}

// Name names the source in messages.
func (s *CmdlineSource) Name() string { return "kernel command line" }

// Fetch reads the machine config from the URL k2.config= names.
func (s *CmdlineSource) Fetch(ctx context.Context) ([]byte, error) {
	u, ok := s.Cmdline[CmdlineConfig]
	if !ok || u == "" {
		return nil, fmt.Errorf("no %s= parameter: %w", CmdlineConfig, ErrNoConfig)
	}
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			return nil, err
		}
	}
	return fetchURL(ctx, s.Client, u)
}

// RefSource reads the config named by `k2 init --config`: a file path or
// an http(s) URL.
type RefSource struct {
	Ref    string
	Client *http.Client
}

// Name names the source in messages (credentials redacted).
func (s *RefSource) Name() string { return "--config " + redactURL(s.Ref) }

// Fetch reads the machine config from the file or URL.
func (s *RefSource) Fetch(ctx context.Context) ([]byte, error) {
	if strings.HasPrefix(s.Ref, "http://") || strings.HasPrefix(s.Ref, "https://") {
		return fetchURL(ctx, s.Client, s.Ref)
	}
	b, err := os.ReadFile(strings.TrimPrefix(s.Ref, "file://"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist", s.Ref)
	}
	return b, err
}

// fetchURL GETs a config; the URL may carry a secret (a single-use path),
// so errors show only its scheme and host.
func fetchURL(ctx context.Context, c *http.Client, raw string) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s=%s: want an http:// or https:// URL", CmdlineConfig, redactURL(raw))
	}
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", redactURL(raw), unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", redactURL(raw), resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, machineconfig.MaxSize+1))
}

// redactURL keeps a URL's scheme and host: its path may be the secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	if u.Path == "" || u.Path == "/" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + "://" + u.Host + "/…"
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// NoConfigError says that no source holds a machine config.
type NoConfigError struct{ Tried []string }

func (e *NoConfigError) Error() string {
	return "no machine config found: tried " + strings.Join(e.Tried, ", ")
}

// Is makes errors.Is(err, ErrNoConfig) true.
func (e *NoConfigError) Is(target error) bool { return target == ErrNoConfig }

// Find asks the sources in order and returns the first document found and
// the source's name. A source that has a config it cannot read yet stops
// the search with its error (the next attempt retries it): a config named
// on the kernel command line is never skipped for a cidata volume.
func Find(ctx context.Context, sources []Source) ([]byte, string, error) {
	var tried []string
	for _, s := range sources {
		b, err := s.Fetch(ctx)
		if errors.Is(err, ErrNoConfig) {
			tried = append(tried, s.Name())
			continue
		}
		if err != nil {
			return nil, s.Name(), fmt.Errorf("%s: %w", s.Name(), err)
		}
		return b, s.Name(), nil
	}
	return nil, "", &NoConfigError{Tried: tried}
}
