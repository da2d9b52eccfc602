package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

// The two servers the control plane calls, for the tests that check that
// it reaches pods: "httpserver webhook" is a validating admission webhook
// (AdmissionReview v1 at /validate) that denies every object whose name
// starts with "forbidden-"; "httpserver apiservice" serves the aggregated
// API demo.k2.dev/v1 with one cluster-scoped resource, greetings, whose
// only object is named after the pod. Both serve HTTPS on $PORT (default
// 8443) with the certificate and key in $TLS_DIR (tls.crt, tls.key).

// DemoGroupVersion is the aggregated API "httpserver apiservice" serves.
const demoGroupVersion = "demo.k2.dev/v1"

func serveTLS(mux *http.ServeMux) error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8443"
	}
	dir := os.Getenv("TLS_DIR")
	cert, err := tls.LoadX509KeyPair(dir+"/tls.crt", dir+"/tls.key")
	if err != nil {
		return fmt.Errorf("loading the serving certificate from $TLS_DIR (%s): %w", dir, err)
	}
	srv := &http.Server{Addr: ":" + port, Handler: logged(mux), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	fmt.Printf("serving HTTPS on :%s\n", port)
	if err := srv.ListenAndServeTLS("", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// webhook serves /validate.
func webhook() error {
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Request    *struct {
				UID  string `json:"uid"`
				Name string `json:"name"`
			} `json:"request"`
		}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "want an AdmissionReview with a request", http.StatusBadRequest)
			return
		}
		allowed := !strings.HasPrefix(review.Request.Name, "forbidden-")
		resp := map[string]any{"uid": review.Request.UID, "allowed": allowed}
		if !allowed {
			resp["status"] = map[string]any{"code": 403, "message": "denied by the k2 test webhook: the name starts with forbidden-"}
		}
		writeJSON(w, map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
	})
	return serveTLS(mux)
}

// apiService serves demo.k2.dev/v1: its discovery document and the
// greetings list.
func apiService() error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/apis/"+demoGroupVersion, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": demoGroupVersion,
			"resources": []map[string]any{{
				"name": "greetings", "singularName": "greeting", "namespaced": false,
				"kind": "Greeting", "verbs": []string{"get", "list"},
			}},
		})
	})
	item := map[string]any{"apiVersion": demoGroupVersion, "kind": "Greeting",
		"metadata": map[string]any{"name": "hello-from-" + host, "creationTimestamp": time.Now().UTC().Format(time.RFC3339)}}
	mux.HandleFunc("/apis/"+demoGroupVersion+"/greetings", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"apiVersion": demoGroupVersion, "kind": "GreetingList",
			"metadata": map[string]any{"resourceVersion": "1"}, "items": []any{item}})
	})
	mux.HandleFunc("/apis/"+demoGroupVersion+"/greetings/", func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimPrefix(r.URL.Path, "/apis/"+demoGroupVersion+"/greetings/") != "hello-from-"+host {
			w.WriteHeader(http.StatusNotFound)
			writeJSON(w, map[string]any{"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
			return
		}
		writeJSON(w, item)
	})
	return serveTLS(mux)
}

func runMode(mode string) {
	var err error
	switch mode {
	case "webhook":
		err = webhook()
	case "apiservice":
		err = apiService()
	}
	if err != nil {
		log.Fatal(err)
	}
}
