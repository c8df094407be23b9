#!/usr/bin/env python3
"""Writes the protobuf field table kaasd decodes Kubernetes protobuf request bodies with.

Run it with the source trees of k8s.io/api, k8s.io/apimachinery, k8s.io/apiextensions-apiserver and
k8s.io/kube-aggregator (one release, e.g. v0.33.x) unpacked under one folder:

    generate_schema.py SOURCE_ROOT > schema.txt

Field numbers and types come from each package's generated.proto; what the JSON form needs and the .proto
does not say (JSON name, Go pointer or value, omitempty, inline) comes from the Go struct tags.
"""
import os, re, sys

ROOT = sys.argv[1]
SCALARS = {"string", "bytes", "int32", "int64", "bool", "double", "float", "uint32", "uint64", "sint32", "sint64",
           "fixed32", "fixed64", "sfixed32", "sfixed64"}

def proto_dirs():
    for base, dirs, files in os.walk(ROOT):
        if "generated.proto" in files and "testapigroup" not in base:
            yield base

def parse_proto(path):
    text = open(path).read()
    package = re.search(r"^package\s+([\w\.]+);", text, re.M).group(1)
    messages = {}
    current = None
    for line in text.splitlines():
        line = line.split("//")[0].strip()
        if not line:
            continue
        m = re.match(r"message\s+(\w+)\s*\{", line)
        if m:
            current = m.group(1)
            messages[current] = []
            continue
        if line == "}":
            current = None
            continue
        if current is None:
            continue
        m = re.match(r"(optional|repeated)\s+([\w\.]+)\s+(\w+)\s*=\s*(\d+)", line)
        if m:
            label, typ, name, number = m.groups()
            messages[current].append((int(number), name, label, None, resolve(typ, package)))
            continue
        m = re.match(r"map<\s*(\w+)\s*,\s*([\w\.]+)\s*>\s+(\w+)\s*=\s*(\d+)", line)
        if m:
            key, value, name, number = m.groups()
            messages[current].append((int(number), name, "map", key, resolve(value, package)))
            continue
        if line.startswith(("option", "reserved")):
            continue
        raise SystemExit("unparsed line in %s: %s" % (path, line))
    return package, messages

def resolve(typ, package):
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    if "." in typ:
        return typ
    return package + "." + typ

def relative(typ, package):
    """Names a message of the same package without its package, the way the .proto files do."""
    if typ.startswith(package + ".") and "." not in typ[len(package) + 1:]:
        return typ[len(package) + 1:]
    return typ

def parse_go(directory):
    """Struct fields by struct name, plus the names of slice types (protobuf wraps them in a message)."""
    structs, slices, aliases = {}, set(), {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".go") or name.endswith("_test.go") or name.startswith(("zz_generated", "generated")):
            continue
        lines = open(os.path.join(directory, name)).read().splitlines()
        current = None
        depth = 0
        for line in lines:
            if line.strip().startswith("//"):
                continue
            code = re.sub(r"`[^`]*`", "", line).split("//")[0]
            if current is None:
                m = re.match(r"^type\s+(\w+)\s+struct\s*\{", code)
                if m:
                    current, depth = m.group(1), code.count("{") - code.count("}")
                    structs[current] = []
                    if depth <= 0:
                        current = None
                    continue
                m = re.match(r"^type\s+(\w+)\s+\[\]", code)
                if m:
                    slices.add(m.group(1))
                m = re.match(r"^type\s+(\w+)\s+=?\s*(\w+)\.(\w+)\s*$", code)
                if m:
                    aliases[m.group(1)] = m.group(3)
                continue
            depth += code.count("{") - code.count("}")
            if depth <= 0:
                current = None
                continue
            if depth != 1:
                continue
            m = re.match(r"^\s*(\w+)\s+([^`\s][^`]*?)\s+`([^`]*)`", line)
            embedded = False
            if not m:
                m2 = re.match(r"^\s*([\*\w\.]+)\s+`([^`]*)`", line)
                if not m2:
                    continue
                field_name, typ, tag, embedded = None, m2.group(1), m2.group(2), True
            else:
                field_name, typ, tag = m.groups()
            tags = dict(re.findall(r'(\w+):"([^"]*)"', tag))
            proto = tags.get("protobuf")
            if not proto or proto == "-":
                continue
            number = int(proto.split(",")[1])
            json_tag = tags.get("json", "")
            json_parts = json_tag.split(",")
            json_name = json_parts[0]
            options = set(json_parts[1:])
            inline = "inline" in options or (embedded and not json_name)
            structs[current].append({
                "number": number,
                "json": json_name if json_name else (None if inline else field_name),
                "pointer": typ.startswith("*"),
                "omitempty": "omitempty" in options or "omitzero" in options,
                "inline": inline,
                "skip": json_name == "-",
            })
    return structs, slices, aliases

def group_of(directory):
    """The API group a package serves, from its +groupName marker or GroupName constant."""
    for name in ("doc.go", "register.go"):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        text = open(path).read()
        m = re.search(r"\+groupName=([\w\.\-]*)", text) or re.search(r'GroupName\s*=\s*"([^"]*)"', text)
        if m:
            return m.group(1)
    return None

out = []
groups = []
parsed = {directory: parse_go(directory) for directory in proto_dirs()}
for directory in sorted(parsed):
    package, messages = parse_proto(os.path.join(directory, "generated.proto"))
    structs, slices, aliases = parsed[directory]
    for name, target in aliases.items():
        if name not in structs:
            for other in sorted(parsed):
                if target in parsed[other][0] and other != directory:
                    structs[name] = parsed[other][0][target]
                    break
    group = group_of(directory)
    version = os.path.basename(directory)
    if package.startswith("k8s.io.api.") or "/pkg/apis/" in directory:
        if group is None:
            raise SystemExit("no group for " + directory)
        groups.append("group %s/%s %s" % (group, version, package) if group else "group %s %s" % (version, package))
    body = ["package " + package]
    for message in sorted(messages):
        fields = messages[message]
        go = structs.get(message)
        full = package + "." + message
        header = "message " + message + (" list" if go is None and message in slices else "")
        if go is None and message not in slices:
            print("note: no Go struct for %s" % full, file=sys.stderr)
        body.append(header)
        by_number = {f["number"]: f for f in (go or [])}
        for number, name, label, key, typ in sorted(fields):
            info = by_number.get(number)
            flags = []
            json_name = name
            if info is None:
                if go is not None:
                    print("note: %s.%s (%d) has no Go field" % (full, name, number), file=sys.stderr)
            else:
                if info["skip"]:
                    continue
                if info["inline"]:
                    flags.append("inline")
                    json_name = "-"
                else:
                    json_name = info["json"]
                if info["pointer"]:
                    flags.append("pointer")
                if info["omitempty"]:
                    flags.append("omitempty")
            typ = relative(typ, package)
            if label == "repeated":
                kind = "repeated " + typ
            elif label == "map":
                kind = "map %s %s" % (key, typ)
            else:
                kind = typ
            body.append("  %d %s %s%s" % (number, json_name, kind, "".join(" " + f for f in flags)))
    out.extend(body)
print("# Generated by generate_schema.py from the generated.proto files and Go types of k8s.io/api, apimachinery,")
print("# apiextensions-apiserver and kube-aggregator v0.33; do not edit by hand.")
print("# group <apiVersion> <package>: the protobuf package of an API group version")
print("# package <name>, then message <name> [list], then one line a field:")
print("#   <number> <json name, - when inlined> [repeated|map <key>] <type> [inline] [pointer] [omitempty]")
for line in groups:
    print(line)
for line in out:
    print(line)
