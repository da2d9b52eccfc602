package ec2fake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type imdsToken struct {
	instance string
	expires  time.Time
}

// IMDSHandler serves instance id's metadata the way the EC2 instance
// metadata service does at 169.254.169.254: IMDSv2 session tokens (PUT
// /latest/api/token), /latest/user-data, /latest/meta-data/… (instance-id,
// local-ipv4, public-ipv4, hostname, instance-type, ami-id,
// placement/region, placement/availability-zone) and
// /latest/dynamic/instance-identity/document. An instance launched with
// HttpTokens=required answers 401 to requests without a valid token.
func (s *Server) IMDSHandler(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		in, ok := s.instances[id]
		if !ok || in.State == stateTerminated {
			http.Error(w, "instance gone", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/latest/api/token" {
			if r.Method != http.MethodPut {
				http.Error(w, "", http.StatusMethodNotAllowed)
				return
			}
			if r.Header.Get("X-Forwarded-For") != "" {
				http.Error(w, "", http.StatusForbidden) // IMDSv2 refuses proxied token requests
				return
			}
			ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
			if err != nil || ttl < 1 || ttl > 21600 {
				http.Error(w, "", http.StatusBadRequest)
				return
			}
			b := make([]byte, 24)
			_, _ = rand.Read(b)
			tok := hex.EncodeToString(b)
			s.imdsTokens[tok] = imdsToken{instance: id, expires: time.Now().Add(time.Duration(ttl) * time.Second)}
			w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
			_, _ = w.Write([]byte(tok))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "", http.StatusMethodNotAllowed)
			return
		}
		tok, hasTok := r.Header.Get("X-aws-ec2-metadata-token"), r.Header.Get("X-aws-ec2-metadata-token") != ""
		t, valid := s.imdsTokens[tok]
		valid = valid && t.instance == id && time.Now().Before(t.expires)
		if (hasTok && !valid) || (!hasTok && in.HTTPTokens == "required") {
			http.Error(w, "", http.StatusUnauthorized)
			return
		}
		body, ok := s.metadata(in, r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
}

// metadata answers one IMDS path. Called with s.mu held.
func (s *Server) metadata(in *instance, path string) ([]byte, bool) {
	md := map[string]string{
		"instance-id":                 in.ID,
		"ami-id":                      in.Image,
		"instance-type":               in.Type,
		"local-ipv4":                  in.PrivateIP,
		"hostname":                    "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + ".ec2.internal",
		"local-hostname":              "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + ".ec2.internal",
		"placement/region":            s.o.Region,
		"placement/availability-zone": s.subnet.AZ,
		"reservation-id":              in.Reservation,
	}
	if in.PublicIP != "" {
		md["public-ipv4"] = in.PublicIP
	}
	switch {
	case path == "/latest/user-data":
		if len(in.UserData) == 0 {
			return nil, false
		}
		return in.UserData, true
	case path == "/latest/meta-data/" || path == "/latest/meta-data":
		var keys []string
		for k := range md {
			k, _, _ = strings.Cut(k, "/")
			if !contains(keys, k) {
				keys = append(keys, k)
			}
		}
		sortByID(keys, func(s string) string { return s })
		return []byte(strings.Join(keys, "\n")), true
	case strings.HasPrefix(path, "/latest/meta-data/"):
		v, ok := md[strings.TrimPrefix(path, "/latest/meta-data/")]
		return []byte(v), ok
	case path == "/latest/dynamic/instance-identity/document":
		b, _ := json.MarshalIndent(map[string]any{
			"accountId": s.o.AccountID, "architecture": in.Arch, "availabilityZone": s.subnet.AZ, "imageId": in.Image,
			"instanceId": in.ID, "instanceType": in.Type, "pendingTime": in.Launched.UTC().Format(time.RFC3339),
			"privateIp": in.PrivateIP, "region": s.o.Region, "version": "2017-09-30",
		}, "", "  ")
		return b, true
	}
	return nil, false
}
