# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the vpc role: the plan of subnets, instances, data volumes and security group rules
computed from its variables, and the checks on CIDRs (Python's ipaddress does the arithmetic)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _network(cidr, what):
    try:
        return ipaddress.IPv4Network(cidr, strict=False)
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"{what}: {cidr!r} is not an IPv4 CIDR ({exc})") from exc


def vpc_subnets(public, private, name, zones):
    """One entry per subnet (name <name>-<tier>-<n>, tier, cidr, index from 0, zone), public first; the
    n-th subnet of a tier goes to the n-th zone (no zone when there are more subnets than zones)."""
    out = []
    for tier, cidrs in (("public", public), ("private", private)):
        for index, cidr in enumerate(cidrs):
            out.append({"name": f"{name}-{tier}-{index + 1}", "tier": tier, "cidr": cidr, "index": index,
                        "zone": zones[index] if index < len(zones) else ""})
    return out


def vpc_subnet_problems(subnets, vpc_cidr, smallest=28):
    """One message per subnet that has host bits set, is smaller than /smallest or lies outside vpc_cidr."""
    vpc = _network(vpc_cidr, "vpc_cidr")
    problems = []
    for subnet in subnets:
        cidr = subnet["cidr"]
        net = _network(cidr, f"subnet {cidr}")
        exact = ipaddress.IPv4Address(cidr.split("/")[0]) == net.network_address
        if not exact or net.prefixlen > smallest or not net.subnet_of(vpc):
            problems.append(f"Subnet {cidr} ({subnet['tier']}) must be a network address (host bits zero), "
                            f"no smaller than /{smallest}, inside vpc_cidr {vpc_cidr}.")
    return problems


def vpc_overlaps(subnets):
    """'a (tier) and b (tier)' for every pair of subnets whose ranges overlap."""
    nets = [(s, _network(s["cidr"], f"subnet {s['cidr']}")) for s in subnets]
    return [f"{a['cidr']} ({a['tier']}) and {b['cidr']} ({b['tier']})"
            for i, (a, na) in enumerate(nets) for b, nb in nets[i + 1:] if na.overlaps(nb)]


def vpc_instance_plan(instances, name, zone_count, environment, instance_types, volume_type, protected):
    """One entry per instance, public tier first. Each tier's hosts go to the zones in turn."""
    out = []
    for tier in ("public", "private"):
        k = 0
        for service, spec in instances.items():
            if spec.get("tier", "private") != tier:
                continue
            for i in range(int(spec.get("count", 1))):
                out.append({
                    "name": f"{name}-{service}-{i + 1}", "service": service, "index": i + 1,
                    "dns_name": f"{service.replace('_', '-')}-{i + 1}", "tier": tier,
                    "subnet_index": k % max(int(zone_count), 1),
                    "instance_type": (spec.get("instance_type") or instance_types).get(environment, ""),
                    "volume_size": int(spec.get("volume_size", 16)),
                    "volume_type": spec.get("volume_type", volume_type),
                    "protected": service in protected,
                })
                k += 1
    return out


def vpc_data_volume_plan(instance_list, data_volumes):
    """One data volume per instance of the services that have one in data_volumes."""
    return [dict(host, volume_name=f"{host['name']}-data", data_size=int(data_volumes[host["service"]]["size"]),
                 mount=data_volumes[host["service"]].get("mount", "/srv/data"))
            for host in instance_list if host["service"] in data_volumes]


def _sources(rule):
    source = rule["from"]
    return [source] if isinstance(source, str) else list(source)


def vpc_rule_sources(security_rules):
    """Every source named by the rules (services, world, admin, vpc), each once, in order of appearance."""
    seen = []
    for rules in security_rules.values():
        for rule in rules:
            seen.extend(s for s in _sources(rule) if s not in seen)
    return seen


def vpc_sg_rules(rules, admin_cidrs, vpc_cidr, group_ids):
    """amazon.aws.ec2_security_group rules: one per source of each rule, a CIDR or another service's group."""
    out = []
    for rule in rules or []:
        for source in _sources(rule):
            entry = {"proto": rule.get("proto", "tcp"), "ports": [str(p) for p in rule["ports"]],
                     "rule_desc": rule.get("desc", source)}
            if source == "world":
                entry["cidr_ip"] = "0.0.0.0/0"
            elif source == "admin":
                entry["cidr_ip"] = admin_cidrs
            elif source == "vpc":
                entry["cidr_ip"] = vpc_cidr
            else:
                entry["group_id"] = group_ids[source]
            out.append(entry)
    return out


class FilterModule:
    def filters(self):
        return {
            "vpc_subnets": vpc_subnets,
            "vpc_subnet_problems": vpc_subnet_problems,
            "vpc_overlaps": vpc_overlaps,
            "vpc_instance_plan": vpc_instance_plan,
            "vpc_data_volume_plan": vpc_data_volume_plan,
            "vpc_rule_sources": vpc_rule_sources,
            "vpc_sg_rules": vpc_sg_rules,
        }
