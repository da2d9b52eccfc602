package fakebmc

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

func (b *BMC) serveSystem(w http.ResponseWriter, r *http.Request, rest string, body []byte) {
	id, sub, _ := strings.Cut(rest, "/")
	b.mu.Lock()
	s, ok := b.systems[id]
	b.mu.Unlock()
	if !ok {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", fmtErr("The resource at the URI %s/%s was not found.", systemsURL, rest))
		return
	}
	base := systemsURL + "/" + id
	switch {
	case sub == "" && r.Method == http.MethodGet:
		b.mu.Lock()
		v := b.systemJSON(s)
		b.mu.Unlock()
		writeJSON(w, http.StatusOK, v)
	case sub == "" && r.Method == http.MethodPatch:
		b.patchSystem(w, s, body)
	case sub == "Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		b.reset(w, s, body)
	case sub == "EthernetInterfaces" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, collection(base+"/"+sub, "#EthernetInterfaceCollection.EthernetInterfaceCollection", "Ethernet Network Interface Collection", []string{base + "/EthernetInterfaces/nic0"}))
	case sub == "EthernetInterfaces/nic0" && r.Method == http.MethodGet:
		m := odata(base+"/"+sub, "#EthernetInterface.v1_4_0.EthernetInterface")
		m["Id"], m["Name"], m["MACAddress"], m["PermanentMACAddress"] = "nic0", "Boot NIC", s.MAC, s.MAC
		m["Status"] = map[string]string{"State": "Enabled", "Health": "OK"}
		writeJSON(w, http.StatusOK, m)
	case sub == "" || sub == "Actions/ComputerSystem.Reset":
		redfishError(w, http.StatusMethodNotAllowed, "OperationNotAllowed", "The HTTP method is not allowed on this resource.")
	default:
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", fmtErr("The resource at the URI %s/%s was not found.", systemsURL, rest))
	}
}

// systemJSON renders s; b.mu is held.
func (b *BMC) systemJSON(s *System) map[string]any {
	base := systemsURL + "/" + s.ID
	m := odata(base, "#ComputerSystem.v1_10_0.ComputerSystem")
	m["Id"], m["Name"], m["SystemType"] = s.ID, s.Name, "Physical"
	m["Manufacturer"], m["Model"], m["SerialNumber"], m["UUID"] = s.Manufacturer, s.Model, s.SerialNumber, s.UUID
	m["PowerState"] = s.PowerState
	m["Status"] = map[string]string{"State": "Enabled", "Health": "OK"}
	boot := map[string]any{
		"BootSourceOverrideTarget":                         s.BootTarget,
		"BootSourceOverrideEnabled":                        s.BootEnabled,
		"BootSourceOverrideTarget@Redfish.AllowableValues": s.BootTargets,
	}
	if !b.opts.Quirks.NoBootMode {
		boot["BootSourceOverrideMode"] = s.BootMode
	}
	if s.HTTPBootURI != "" {
		boot["HttpBootUri"] = s.HTTPBootURI
	}
	m["Boot"] = boot
	m["EthernetInterfaces"] = link(base + "/EthernetInterfaces")
	m["Actions"] = map[string]any{"#ComputerSystem.Reset": map[string]any{
		"target":                            base + "/Actions/ComputerSystem.Reset",
		"ResetType@Redfish.AllowableValues": s.ResetTypes,
	}}
	m["Links"] = map[string]any{"Chassis": []any{}, "ManagedBy": []any{}}
	return m
}

func (b *BMC) patchSystem(w http.ResponseWriter, s *System, body []byte) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		redfishError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	for k := range req {
		if k != "Boot" {
			redfishError(w, http.StatusBadRequest, "PropertyNotWritable", fmtErr("The property %s is a read only property and cannot be assigned a value.", k))
			return
		}
	}
	var boot map[string]any
	if err := json.Unmarshal(req["Boot"], &boot); err != nil {
		redfishError(w, http.StatusBadRequest, "PropertyValueTypeError", "The value for the property Boot is of a different type than the property can accept.")
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := *s
	for k, v := range boot {
		str, _ := v.(string)
		switch k {
		case "BootSourceOverrideTarget":
			if !slices.Contains(s.BootTargets, str) {
				redfishError(w, http.StatusBadRequest, "PropertyValueNotInList", fmtErr("The value %q for the property BootSourceOverrideTarget is not in the list of acceptable values.", str))
				return
			}
			next.BootTarget = str
		case "BootSourceOverrideEnabled":
			if !slices.Contains([]string{"Disabled", "Once", "Continuous"}, str) {
				redfishError(w, http.StatusBadRequest, "PropertyValueNotInList", fmtErr("The value %q for the property BootSourceOverrideEnabled is not in the list of acceptable values.", str))
				return
			}
			next.BootEnabled = str
		case "BootSourceOverrideMode":
			if b.opts.Quirks.NoBootMode {
				redfishError(w, http.StatusBadRequest, "PropertyNotWritable", "The property BootSourceOverrideMode is a read only property and cannot be assigned a value.")
				return
			}
			if str != "UEFI" && str != "Legacy" {
				redfishError(w, http.StatusBadRequest, "PropertyValueNotInList", fmtErr("The value %q for the property BootSourceOverrideMode is not in the list of acceptable values.", str))
				return
			}
			next.BootMode = str
		case "HttpBootUri":
			next.HTTPBootURI = str
		default:
			redfishError(w, http.StatusBadRequest, "PropertyUnknown", fmtErr("The property Boot/%s is not in the list of valid properties for the resource.", k))
			return
		}
	}
	*s = next
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) reset(w http.ResponseWriter, s *System, body []byte) {
	var req struct{ ResetType string }
	if err := json.Unmarshal(body, &req); err != nil || req.ResetType == "" {
		redfishError(w, http.StatusBadRequest, "ActionParameterMissing", "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.")
		return
	}
	b.mu.Lock()
	if !slices.Contains(s.ResetTypes, req.ResetType) {
		b.mu.Unlock()
		redfishError(w, http.StatusBadRequest, "ActionParameterNotSupported", fmtErr("The parameter ResetType for the action ComputerSystem.Reset is not supported on the target resource: %s.", req.ResetType))
		return
	}
	var state string
	switch req.ResetType {
	case "On":
		if s.PowerState != "On" {
			state = "On"
		}
	case "ForceOff", "GracefulShutdown":
		if s.PowerState != "Off" {
			state = "Off"
		}
	case "PushPowerButton":
		state = map[string]string{"On": "Off", "Off": "On"}[s.PowerState]
	case "ForceRestart", "GracefulRestart":
		state = "Restart"
		if s.PowerState == "Off" {
			state = "On" // restarting a machine that is off powers it on
		}
	case "Nmi":
	}
	target := ""
	if state == "On" || state == "Restart" {
		if s.BootEnabled != "Disabled" {
			target = s.BootTarget
		}
		if s.BootEnabled == "Once" {
			s.BootEnabled = "Disabled" // a one-time override is consumed by this boot
		}
	}
	hook := b.opts.OnPower
	id := s.ID
	b.mu.Unlock()
	if state != "" && hook != nil {
		if err := hook(id, state, target); err != nil {
			redfishError(w, http.StatusInternalServerError, "InternalError", fmtErr("The request failed due to an internal service error: %v", err))
			return
		}
	}
	if state != "" {
		b.mu.Lock()
		s.PowerState = map[string]string{"On": "On", "Restart": "On", "Off": "Off"}[state]
		b.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}
