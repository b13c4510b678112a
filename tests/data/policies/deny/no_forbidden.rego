# Test policy: no terraform_data may hold the word "forbidden".
package main

deny contains msg if {
	some rc in input.resource_changes
	rc.type == "terraform_data"
	"create" in rc.change.actions
	contains(sprintf("%v", [rc.change.after.input]), "forbidden")
	msg := sprintf("%s holds a forbidden value", [rc.address])
}
