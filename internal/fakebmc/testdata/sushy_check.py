# Drives the fake BMC with OpenStack Ironic's Redfish library, python3-sushy:
# log in (a session), list systems, read one, set a one-time PXE boot, power
# it on and off. Prints one JSON document of what sushy saw.
import json
import sys

import sushy

url, user, password, auth_kind = sys.argv[1:5]


def v(x):
    """The Redfish value of a sushy enum (sushy 4 returns enums)."""
    return str(getattr(x, "value", x))


if auth_kind == "basic":
    auth = sushy.auth.BasicAuth(username=user, password=password)
else:
    auth = sushy.auth.SessionAuth(username=user, password=password)
root = sushy.Sushy(url, auth=auth, verify=False)
out = {"systems": []}
for s in root.get_system_collection().get_members():
    out["systems"].append({"id": s.identity, "power": v(s.power_state), "serial": s.serial_number, "name": s.name, "uuid": s.uuid})
s = root.get_system("/redfish/v1/Systems/1")
out["allowedResets"] = sorted(v(r) for r in s.get_allowed_reset_system_values())
s.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
s.refresh()
out["bootAfterSet"] = {"target": v(s.boot.target), "enabled": v(s.boot.enabled)}
s.reset_system(sushy.RESET_ON)
s.refresh()
out["powerAfterOn"] = v(s.power_state)
out["bootAfterOn"] = v(s.boot.enabled)
s.reset_system(sushy.RESET_FORCE_OFF)
s.refresh()
out["powerAfterOff"] = v(s.power_state)
print(json.dumps(out))
