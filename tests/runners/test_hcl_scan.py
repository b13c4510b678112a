"""runners/hcl_scan.py: the blocks, attributes and literals init fingerprints are made of."""
from __future__ import annotations

from runners.hcl_scan import parse, parse_json

MAIN = '''
# a comment { with a brace
terraform {
  required_version = ">= 1.5" // trailing
  backend "s3" {
    bucket = "state"
    key    = "app/${terraform.workspace}"   /* not a real interpolation in a backend */
  }
}

module "net" { source = "./modules/net" }

module "db" {
  source  = "terraform-aws-modules/rds/aws"
  version = "~> 6.0"
  tags    = { name = "db", "x}" = "{" }
  policy  = <<-EOT
    { "Statement": "}" }
  EOT
}

resource "aws_instance" "web" {
  ami      = "ami-${var.x}"
  provider = aws.west
}
'''


def test_blocks_attributes_and_literals():
    blocks = {(b.type, b.labels): b for b in parse(MAIN)}
    terraform = blocks[("terraform", ())]
    backend = terraform.blocks[0]
    assert (backend.type, backend.labels) == ("backend", ("s3",))
    assert backend.attributes["bucket"].literal == "state"
    assert backend.attributes["key"].literal is None  # a template is not a literal
    assert blocks[("module", ("net",))].attributes["source"].literal == "./modules/net"  # one-line block
    db = blocks[("module", ("db",))]
    assert db.attributes["source"].literal == "terraform-aws-modules/rds/aws"
    assert db.attributes["version"].literal == "~> 6.0"
    assert set(db.attributes) == {"source", "version", "tags", "policy"}  # braces in strings and heredocs
    web = blocks[("resource", ("aws_instance", "web"))]
    assert web.attributes["ami"].references("var") and web.attributes["provider"].text == "aws . west"


def test_comments_and_layout_change_nothing():
    reformatted = MAIN.replace("source  =", "source=").replace("\n\n", "\n\n\n").replace(
        "# a comment", "# another comment").replace("// trailing", "# other").replace("  ami      =", "ami =")
    assert [b.tokens for b in parse(MAIN)] == [b.tokens for b in parse(reformatted)]


def test_escapes_and_literal_dollar():
    (block,) = parse('module "m" {\n  source = "./a\\"b$${x}"\n}\n')
    assert block.attributes["source"].literal == './a"b${x}'


def test_broken_text_never_raises():
    assert parse('terraform {\n  backend "s3" {\n    bucket = "unterminated\n') != []
    assert parse("}}} = = {{{") == []


def test_json_configuration():
    text = '''{"terraform": {"backend": {"local": {"path": "x.tfstate"}}, "required_version": ">= 1"},
               "module": {"m": {"source": "./m", "version": "1.0"}, "t": {"source": "${var.s}"}},
               "resource": {"aws_s3_bucket": {"b": {"bucket": "x"}}}}'''
    blocks = {(b.type, b.labels): b for b in parse_json(text)}
    backend = blocks[("terraform", ())].blocks[0]
    assert (backend.type, backend.labels, backend.attributes["path"].literal) == ("backend", ("local",), "x.tfstate")
    assert blocks[("module", ("m",))].attributes["version"].literal == "1.0"
    template = blocks[("module", ("t",))].attributes["source"]
    assert template.literal is None and template.references("var")
    assert ("resource", ("aws_s3_bucket", "b")) in blocks
    assert parse_json("not json") == [] and parse_json("[1]") == []
