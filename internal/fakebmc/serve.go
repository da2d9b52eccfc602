package fakebmc

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	root        = "/redfish/v1"
	sessionsURL = root + "/SessionService/Sessions"
	systemsURL  = root + "/Systems"
)

// ServeHTTP answers one Redfish request.
func (b *BMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "" {
		path = "/"
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	auth := b.authenticate(r)
	b.mu.Lock()
	c := Call{Method: r.Method, Path: path, Auth: auth}
	if len(body) > 0 && !strings.HasPrefix(path, sessionsURL) {
		c.Body = strings.TrimSpace(string(body)) // never record a session's password
	}
	b.calls = append(b.calls, c)
	b.mu.Unlock()

	if f := b.takeFault(r.Method, path); f != nil {
		if f.delay > 0 {
			select {
			case <-time.After(f.delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.status != 0 {
			redfishError(w, f.status, "InternalError", fmtErr("injected fault: %d", f.status))
			return
		}
	}

	// Public: the version document, the service root, and logging in.
	switch {
	case path == "/redfish" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]string{"v1": root + "/"})
		return
	case path == root && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, b.serviceRoot())
		return
	case path == sessionsURL && r.Method == http.MethodPost && !b.opts.Quirks.NoSessions:
		b.login(w, body)
		return
	}
	if auth == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="fakebmc"`)
		redfishError(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
		return
	}
	switch {
	case strings.HasPrefix(path, root+"/SessionService") && !b.opts.Quirks.NoSessions:
		b.serveSessions(w, r, path)
	case path == systemsURL && r.Method == http.MethodGet:
		b.systemCollection(w)
	case strings.HasPrefix(path, systemsURL+"/"):
		b.serveSystem(w, r, strings.TrimPrefix(path, systemsURL+"/"), body)
	case (path == root+"/Chassis" || path == root+"/Managers") && r.Method == http.MethodGet:
		name := strings.TrimPrefix(path, root+"/")
		writeJSON(w, http.StatusOK, collection(path, "#"+strings.TrimSuffix(name, "s")+"Collection."+strings.TrimSuffix(name, "s")+"Collection", name+" Collection", nil))
	default:
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", fmtErr("The resource at the URI %s was not found.", path))
	}
}

// authenticate returns "session", "basic" or "" for r's credentials.
func (b *BMC) authenticate(r *http.Request) string {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		b.mu.Lock()
		_, ok := b.sessions[tok]
		b.mu.Unlock()
		if ok {
			return "session"
		}
		return ""
	}
	if u, p, ok := r.BasicAuth(); ok && u == b.opts.Username && p == b.opts.Password {
		return "basic"
	}
	return ""
}

func odata(id, typ string) map[string]any {
	return map[string]any{"@odata.id": id, "@odata.type": typ}
}

func link(id string) map[string]string { return map[string]string{"@odata.id": id} }

func collection(id, typ, name string, members []string) map[string]any {
	m := odata(id, typ)
	m["Name"] = name
	ms := []map[string]string{}
	for _, x := range members {
		ms = append(ms, link(x))
	}
	m["Members"] = ms
	m["Members@odata.count"] = len(ms)
	return m
}

func (b *BMC) serviceRoot() map[string]any {
	m := odata(root, "#ServiceRoot.v1_5_0.ServiceRoot")
	m["Id"] = "RootService"
	m["Name"] = "fakebmc Redfish service (a fake for tests)"
	m["RedfishVersion"] = "1.6.0"
	m["UUID"] = "92384634-2938-2342-8820-489239905423"
	m["Systems"] = link(systemsURL)
	m["Chassis"] = link(root + "/Chassis")
	m["Managers"] = link(root + "/Managers")
	if !b.opts.Quirks.NoSessions {
		m["SessionService"] = link(root + "/SessionService")
		m["Links"] = map[string]any{"Sessions": link(sessionsURL)}
	} else {
		m["Links"] = map[string]any{}
	}
	return m
}

func (b *BMC) login(w http.ResponseWriter, body []byte) {
	var req struct{ UserName, Password string }
	if err := json.Unmarshal(body, &req); err != nil {
		redfishError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if req.UserName != b.opts.Username || req.Password != b.opts.Password {
		redfishError(w, http.StatusUnauthorized, "ResourceAtUriUnauthorized", "While accessing the resource at /redfish/v1/SessionService/Sessions, the service received an authorization error unauthorized.")
		return
	}
	b.mu.Lock()
	b.nextSess++
	id := fmtErr("%d", b.nextSess)
	tok := newToken()
	b.sessions[tok] = id
	b.mu.Unlock()
	loc := sessionsURL + "/" + id
	w.Header().Set("X-Auth-Token", tok)
	w.Header().Set("Location", loc)
	s := odata(loc, "#Session.v1_0_0.Session")
	s["Id"], s["Name"], s["UserName"] = id, "User Session", req.UserName
	writeJSON(w, http.StatusCreated, s)
}

func (b *BMC) serveSessions(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case path == root+"/SessionService" && r.Method == http.MethodGet:
		m := odata(path, "#SessionService.v1_1_3.SessionService")
		m["Id"], m["Name"], m["ServiceEnabled"], m["SessionTimeout"] = "SessionService", "Session Service", true, 1800
		m["Sessions"] = link(sessionsURL)
		writeJSON(w, http.StatusOK, m)
	case path == sessionsURL && r.Method == http.MethodGet:
		b.mu.Lock()
		var ids []string
		for _, id := range b.sessions {
			ids = append(ids, sessionsURL+"/"+id)
		}
		b.mu.Unlock()
		writeJSON(w, http.StatusOK, collection(path, "#SessionCollection.SessionCollection", "Session Collection", ids))
	case strings.HasPrefix(path, sessionsURL+"/"):
		id := strings.TrimPrefix(path, sessionsURL+"/")
		b.mu.Lock()
		tok := ""
		for t, sid := range b.sessions {
			if sid == id {
				tok = t
			}
		}
		if tok != "" && r.Method == http.MethodDelete {
			delete(b.sessions, tok)
		}
		b.mu.Unlock()
		switch {
		case tok == "":
			redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", fmtErr("The resource at the URI %s was not found.", path))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet:
			s := odata(path, "#Session.v1_0_0.Session")
			s["Id"], s["Name"], s["UserName"] = id, "User Session", b.opts.Username
			writeJSON(w, http.StatusOK, s)
		default:
			redfishError(w, http.StatusMethodNotAllowed, "OperationNotAllowed", "The HTTP method is not allowed on this resource.")
		}
	default:
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", fmtErr("The resource at the URI %s was not found.", path))
	}
}

func (b *BMC) systemCollection(w http.ResponseWriter) {
	var ids []string
	for _, id := range b.order {
		ids = append(ids, systemsURL+"/"+id)
	}
	writeJSON(w, http.StatusOK, collection(systemsURL, "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection", ids))
}
