package main

deny contains "deletions need a separate pull request" if {
	some rc in input.resource_changes
	"delete" in rc.change.actions
}
