package join

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// TokenVerifier checks a presented token id and secret against the stored
// tokens (the control plane keeps HashSecret(secret) per id and compares
// with VerifySecret).
type TokenVerifier interface {
	Verify(ctx context.Context, id, secret string) (bool, error)
}

// StaticTokens is a TokenVerifier over an in-memory map id → secret hash.
type StaticTokens struct {
	mu     sync.RWMutex
	hashes map[string]string
}

// Add stores a token's secret hash.
func (s *StaticTokens) Add(t Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hashes == nil {
		s.hashes = map[string]string{}
	}
	s.hashes[t.ID] = HashSecret(t.Secret)
}

// Verify implements TokenVerifier.
func (s *StaticTokens) Verify(_ context.Context, id, secret string) (bool, error) {
	s.mu.RLock()
	h, ok := s.hashes[id]
	s.mu.RUnlock()
	return ok && VerifySecret(h, secret), nil
}

// ServerConfig configures the join endpoint.
type ServerConfig struct {
	CACert *x509.Certificate
	CAKey  crypto.Signer
	// CAPEM is served by /v1/ca byte for byte, so that its hash is the one
	// tokens pin; default: the PEM encoding of CACert.
	CAPEM []byte
	// APIServerURL is returned to joining nodes as the API server address.
	APIServerURL string
	Tokens       TokenVerifier
	Logger       *slog.Logger // nil discards
	// CertValidity of node client certificates; default one year.
	CertValidity time.Duration
	// Images holds the vendored image archives served under /v1/images;
	// nil answers those routes with 404. See imageRoutes for the routes
	// and who may use them.
	Images *ImageStore
	// Server, when set, adds the server routes (servers.go): what the
	// servers of an HA cluster and k2 on the deploying host ask.
	Server ServerHooks
}

// Request is the body of POST /v1/join.
type Request struct {
	NodeName string `json:"nodeName"`
	CSR      string `json:"csr"` // PEM "CERTIFICATE REQUEST"
}

// Response is the answer to a successful join.
type Response struct {
	ClientCert string `json:"clientCert"` // PEM
	CACert     string `json:"caCert"`     // PEM
	Server     string `json:"server"`     // API server URL
}

// nodeNameRE is a DNS-1123 subdomain, as Kubernetes requires of node names.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// NewHandler serves GET /v1/ca (the CA PEM, unauthenticated: clients check
// it against the hash in their token), POST /v1/join (Authorization:
// Bearer <id>.<secret>; body Request) which signs a client certificate for
// CN=system:node:<nodeName>, O=system:nodes, and the image routes under
// /v1/images (see [ServerConfig.Images]). Serve it over TLS; for the image
// routes, with ClientAuth tls.RequestClientCert so clients may present a
// certificate.
func NewHandler(cfg ServerConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CertValidity == 0 {
		cfg.CertValidity = 365 * 24 * time.Hour
	}
	caPEM := cfg.CAPEM
	if len(caPEM) == 0 {
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.CACert.Raw})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ca", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(caPEM)
	})
	mux.HandleFunc("POST /v1/join", func(w http.ResponseWriter, r *http.Request) {
		cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		id, secret, err := ParseCredential(cred)
		if !ok || err != nil {
			httpError(w, http.StatusUnauthorized, "missing or malformed bearer token")
			return
		}
		valid, err := cfg.Tokens.Verify(r.Context(), id, secret)
		if err != nil {
			cfg.Logger.Error("verifying join token", "id", id, "err", err)
			httpError(w, http.StatusInternalServerError, "cannot verify the token now; retry")
			return
		}
		if !valid {
			cfg.Logger.Warn("join refused: unknown or wrong token", "id", id, "remote", r.RemoteAddr)
			httpError(w, http.StatusUnauthorized, "unknown or expired join token")
			return
		}
		var req Request
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "decoding request: "+err.Error())
			return
		}
		if len(req.NodeName) > 253 || !nodeNameRE.MatchString(req.NodeName) {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("node name %q is not a valid DNS subdomain", req.NodeName))
			return
		}
		certPEM, err := sign(cfg, req)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		cfg.Logger.Info("node joined", "node", req.NodeName, "token", id, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Response{ClientCert: string(certPEM), CACert: string(caPEM), Server: cfg.APIServerURL})
	})
	imageRoutes(mux, cfg)
	serverRoutes(mux, cfg)
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // messages show <id>.<secret> and the like
	_ = enc.Encode(map[string]string{"error": msg})
}

// sign checks the CSR and signs the node's client certificate.
func sign(cfg ServerConfig, req Request) ([]byte, error) {
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("csr is not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The subject comes from the request, not the CSR: a token holder
		// gets a node identity and nothing else.
		Subject:     pkix.Name{CommonName: "system:node:" + req.NodeName, Organization: []string{"system:nodes"}},
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    now.Add(cfg.CertValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cfg.CACert, csr.PublicKey, cfg.CAKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
