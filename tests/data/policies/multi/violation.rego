# conftest's structured form: objects with a msg.
package main

violation contains {"msg": msg, "details": {}} if {
	count(input.resource_changes) > 2
	msg := "too many resources in one plan"
}
