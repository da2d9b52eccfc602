package artifact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"k2.dev/k2/internal/usererr"
)

// RemoteOptions configure registry access. The zero value uses HTTPS with
// docker's credentials (~/.docker/config.json, $DOCKER_CONFIG), except for
// localhost and loopback addresses, which are reached over plain HTTP.
type RemoteOptions struct {
	// Insecure uses plain HTTP for every registry, not only loopback ones.
	Insecure bool
	// DockerConfig is the path of a docker config.json holding credentials;
	// empty uses docker's default location.
	DockerConfig string
	// Client is the HTTP client; nil uses oras-go's retrying client.
	Client *http.Client
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

func (o RemoteOptions) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// hasRegistry reports whether ref names a registry host, as docker decides:
// the first path component contains a dot or a colon, or is localhost.
func hasRegistry(ref string) bool {
	i := strings.Index(ref, "/")
	if i < 0 {
		return false
	}
	h := ref[:i]
	return strings.ContainsAny(h, ".:") || h == "localhost"
}

// isLoopback reports whether a registry host is localhost or a loopback IP.
func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// repository returns the remote repository of ref and the tag or digest.
func (o RemoteOptions) repository(ref string) (*remote.Repository, string, error) {
	if !hasRegistry(ref) {
		return nil, "", usererr.New(usererr.KindUsage, "%s names no registry; use host[:port]/repo:tag, e.g. localhost:5000/%s", ref, ref)
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, "", usererr.Wrap(usererr.KindUsage, fmt.Errorf("parsing reference %s: %w", ref, err), "")
	}
	repo, err := remote.NewRepository(r.Registry + "/" + r.Repository)
	if err != nil {
		return nil, "", err
	}
	repo.PlainHTTP = o.Insecure || isLoopback(r.Registry)
	client := o.Client
	if client == nil {
		client = retry.DefaultClient
	}
	ac := &auth.Client{Client: client, Cache: auth.NewCache(), Header: http.Header{"User-Agent": {"k2"}}}
	var cs credentials.Store
	if o.DockerConfig != "" {
		cs, err = credentials.NewStore(o.DockerConfig, credentials.StoreOptions{})
	} else {
		cs, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		return nil, "", usererr.Wrap(usererr.KindRegistry, fmt.Errorf("reading docker credentials: %w", err), "check ~/.docker/config.json")
	}
	ac.Credential = credentials.Credential(cs)
	repo.Client = ac
	return repo, r.Reference, nil
}

// registryErr marks err as a registry error (exit code 5) with a hint.
func registryErr(op, ref string, err error) error {
	var ue *usererr.Error
	if errors.As(err, &ue) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s %s: %w", op, ref, err) // interrupted: exit 130, not 5
	}
	hint := "check that the registry is running and reachable"
	var resp *errcode.ErrorResponse
	if errors.Is(err, auth.ErrBasicCredentialNotFound) ||
		(errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden)) {
		hint = "log in with docker login (k2 reads docker's config.json)"
	} else if errors.Is(err, errdef.ErrNotFound) {
		hint = "check the reference"
	} else if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		hint = "the registry speaks plain HTTP; use --insecure"
	}
	return usererr.Wrap(usererr.KindRegistry, fmt.Errorf("%s %s: %w", op, ref, err), hint)
}

// Push copies ref from the store to its registry and returns the
// digest-pinned reference (host/repo@sha256:…) and the manifest.
func Push(ctx context.Context, s *Store, ref string, o RemoteOptions) (string, ocispec.Descriptor, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return "", ocispec.Descriptor{}, err
	}
	if _, err := s.Resolve(ctx, ref); err != nil {
		return "", ocispec.Descriptor{}, usererr.Wrap(usererr.KindInvalid, err, "build it with k2 build -t "+ref+" or pull it")
	}
	repo, tag, err := o.repository(ref)
	if err != nil {
		return "", ocispec.Descriptor{}, err
	}
	d, err := copyWithReferrers(ctx, s.oci, ref, repo, tag, "pushing", o.logger())
	if err != nil {
		return "", d, registryErr("pushing", ref, err)
	}
	return pinned(ref, d), d, nil
}

// Pull copies ref from its registry into the store, tagged ref.
func Pull(ctx context.Context, s *Store, ref string, o RemoteOptions) (ocispec.Descriptor, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo, tag, err := o.repository(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer unlock()
	log := o.logger()
	d, err := copyWithReferrers(ctx, repo, tag, s.oci, ref, "pulling", log)
	if err != nil {
		return d, registryErr("pulling", ref, err)
	}
	if d.ArtifactType != "" && d.ArtifactType != ArtifactType {
		log.Warn("not a k2 cluster artifact", "ref", ref, "artifactType", d.ArtifactType)
	}
	return d, nil
}

// copyWithReferrers copies the artifact srcRef names, with everything that
// refers to it (signatures and other OCI referrers), from src to dst and
// tags it dstRef there. verb ("pushing") names the progress it logs.
func copyWithReferrers(ctx context.Context, src oras.ReadOnlyGraphTarget, srcRef string, dst oras.Target, dstRef, verb string, log *slog.Logger) (ocispec.Descriptor, error) {
	opts := oras.DefaultExtendedCopyOptions
	opts.Concurrency = 4
	opts.PreCopy = func(_ context.Context, d ocispec.Descriptor) error {
		log.Info(verb, "digest", d.Digest.String(), "size", d.Size, "mediaType", d.MediaType)
		return nil
	}
	opts.OnCopySkipped = func(_ context.Context, d ocispec.Descriptor) error {
		log.Debug("exists", "digest", d.Digest.String())
		return nil
	}
	return oras.ExtendedCopy(ctx, src, srcRef, dst, dstRef, opts)
}

// OpenRemote opens ref directly from its registry without storing it.
func OpenRemote(ctx context.Context, ref string, o RemoteOptions) (*Artifact, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	repo, tag, err := o.repository(ref)
	if err != nil {
		return nil, err
	}
	d, err := repo.Resolve(ctx, tag)
	if err != nil {
		return nil, registryErr("resolving", ref, err)
	}
	a, err := openDesc(ctx, repo, ref, d)
	if err != nil {
		return nil, registryErr("reading", ref, err)
	}
	return a, nil
}

// pinned returns ref with its tag replaced by the digest of d.
func pinned(ref string, d ocispec.Descriptor) string { return PinnedRef(ref, d.Digest.String()) }

// PinnedRef returns ref with its tag or digest replaced by digest
// (host/repo:v1 → host/repo@sha256:…), so that using it never resolves a
// tag again.
func PinnedRef(ref, digest string) string {
	name := ref
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	} else if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name + "@" + digest
}
