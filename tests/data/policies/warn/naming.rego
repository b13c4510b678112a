# Test policy: warn about resources named "x" (never blocks).
package main

warn contains msg if {
	some rc in input.resource_changes
	rc.name == "x"
	msg := sprintf("%s: give it a descriptive name", [rc.address])
}
