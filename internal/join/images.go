package join

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Organizations that grant access to the image routes.
const (
	orgMasters = "system:masters"
	orgNodes   = "system:nodes"
)

// Image routes of the join endpoint (see NewHandler and imageRoutes):
//
//	PUT  /v1/images/sha256:<hex>?ref=<image ref>  admin: store an archive
//	HEAD /v1/images/sha256:<hex>                  reader: is it stored?
//	GET  /v1/images/sha256:<hex>                  reader: the archive (Range works)
//	GET  /v1/images                               reader: JSON []Image
//
// An admin presents a client certificate signed by the cluster CA with
// O=system:masters (the deploy side's admin.crt). A reader is an admin, a
// node (a certificate with O=system:nodes, what Join writes) or the holder
// of a join token (Authorization: Bearer <id>.<secret>). The TLS server
// must ask for client certificates without requiring them
// (tls.RequestClientCert or tls.VerifyClientCertIfGiven), so the join
// route, which authenticates by token alone, keeps working.
const imagesPath = "/v1/images"

type access int

const (
	accessNone access = iota
	accessRead
	accessAdmin
)

// imageRoutes adds the image routes to mux.
func imageRoutes(mux *http.ServeMux, cfg ServerConfig) {
	roots := x509.NewCertPool()
	roots.AddCert(cfg.CACert)
	auth := func(need access, next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !allowed(w, r, cfg, roots, need, "image route",
				"authentication required: present the cluster's admin or a node client certificate, or a join token (Authorization: Bearer <id>.<secret>)",
				func(who string) string {
					msg := fmt.Sprintf("%s may not %s images", who, r.Method)
					if need == accessAdmin {
						msg += "; uploading needs the cluster admin certificate (O=system:masters)"
					}
					return msg
				}) {
				return
			}
			if cfg.Images == nil {
				httpError(w, http.StatusNotFound, "this k2 server keeps no vendored images")
				return
			}
			next(w, r)
		}
	}
	mux.HandleFunc("GET "+imagesPath, auth(accessRead, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cfg.Images.List())
	}))
	// GET also answers HEAD.
	mux.HandleFunc("GET "+imagesPath+"/{digest}", auth(accessRead, func(w http.ResponseWriter, r *http.Request) {
		f, im, err := cfg.Images.Open(r.PathValue("digest"))
		if errors.Is(err, ErrNoImage) {
			httpError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			cfg.Logger.Error("opening image archive", "digest", r.PathValue("digest"), "err", err)
			httpError(w, http.StatusInternalServerError, "cannot read the image archive now; retry")
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("ETag", `"`+im.Digest+`"`)
		w.Header().Set(imageRefHeader, im.Ref)
		// ServeContent sets Content-Length, answers HEAD and Range.
		http.ServeContent(w, r, "", time.Time{}, f)
	}))
	mux.HandleFunc("PUT "+imagesPath+"/{digest}", auth(accessAdmin, func(w http.ResponseWriter, r *http.Request) {
		digest, ref := r.PathValue("digest"), r.URL.Query().Get("ref")
		if _, ok := digestHex(digest); !ok {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("digest %q: want sha256:<64 lowercase hex characters>", digest))
			return
		}
		if err := validRef(ref); err != nil {
			httpError(w, http.StatusBadRequest, "query parameter ref: "+err.Error())
			return
		}
		im, stored, err := cfg.Images.Put(ref, digest, r.Body)
		switch {
		case errors.Is(err, ErrDigestMismatch):
			httpError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			cfg.Logger.Error("storing image archive", "ref", ref, "digest", digest, "err", err)
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		}
		code := http.StatusOK
		if stored {
			code = http.StatusCreated
			cfg.Logger.Info("image archive stored", "ref", ref, "digest", digest, "size", im.Size)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(im)
	}))
}

// imageRefHeader carries an archive's reference on GET and HEAD.
const imageRefHeader = "K2-Image-Ref"

// statusError is an HTTP status and the message sent with it.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// allowed answers r with the caller's own error, 401 (anonymous) or 403
// (forbidden(who)) and returns false unless the caller has at least need;
// route names the routes in the log of a refusal.
func allowed(w http.ResponseWriter, r *http.Request, cfg ServerConfig, roots *x509.CertPool, need access, route, anonymous string, forbidden func(who string) string) bool {
	got, who, err := caller(r, cfg, roots)
	var se *statusError
	switch {
	case errors.As(err, &se):
		httpError(w, se.code, se.msg)
		return false
	case got == accessNone && who == "":
		httpError(w, http.StatusUnauthorized, anonymous)
		return false
	case got < need:
		cfg.Logger.Warn(route+" refused", "who", who, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		httpError(w, http.StatusForbidden, forbidden(who))
		return false
	}
	return true
}

// caller says what r may do on the image routes and who it is. A client
// certificate that does not chain to the cluster CA, or a wrong token, is
// a *statusError (401); an identity with too little access is returned with its
// name so the route answers 403.
func caller(r *http.Request, cfg ServerConfig, roots *x509.CertPool) (access, string, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		certs := r.TLS.PeerCertificates
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return accessNone, "", &statusError{http.StatusUnauthorized, fmt.Sprintf("the client certificate %q is not valid for this cluster: %v", certs[0].Subject.CommonName, err)}
		}
		who := "certificate " + certs[0].Subject.CommonName
		switch {
		case slices.Contains(certs[0].Subject.Organization, orgMasters):
			return accessAdmin, who, nil
		case slices.Contains(certs[0].Subject.Organization, orgNodes):
			return accessRead, who, nil
		}
		return accessNone, who, nil
	}
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return accessNone, "", nil
	}
	id, secret, err := ParseCredential(cred)
	if err != nil {
		return accessNone, "", &statusError{http.StatusUnauthorized, "malformed bearer token: " + err.Error()}
	}
	if cfg.Tokens == nil {
		return accessNone, "", &statusError{http.StatusUnauthorized, "this server accepts no join tokens"}
	}
	valid, err := cfg.Tokens.Verify(r.Context(), id, secret)
	if err != nil {
		cfg.Logger.Error("verifying join token", "id", id, "err", err)
		return accessNone, "", &statusError{http.StatusInternalServerError, "cannot verify the token now; retry"}
	}
	if !valid {
		return accessNone, "", &statusError{http.StatusUnauthorized, "unknown or expired join token"}
	}
	return accessRead, "token " + id, nil
}
