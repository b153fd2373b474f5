"""The ec2_stop_protection module against moto's in-process EC2: idempotence, check mode, bad input."""

from __future__ import annotations

import boto3
import pytest
from ansible_collections.streamcloud.platform.plugins.modules import ec2_stop_protection
from botocore.exceptions import ClientError
from moto import mock_aws

REGION = "eu-west-3"


@pytest.fixture(scope="module")
def moto_ec2():
    """One in-process moto for the module (starting it is the slow part): two instances."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            env.setenv(name, value)
        with mock_aws():
            client = boto3.client("ec2", region_name=REGION)
            image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
            ids = [i["InstanceId"] for i in client.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]]
            yield client, ids


@pytest.fixture
def ec2(moto_ec2):
    """Both instances unprotected at the start of each test."""
    client, ids = moto_ec2
    for instance_id in ids:
        client.modify_instance_attribute(InstanceId=instance_id, DisableApiStop={"Value": False})
    return client, ids


def protected(client, instance_id):
    answer = client.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiStop")
    return answer["DisableApiStop"]["Value"]


def test_on_then_a_rerun_changes_nothing(run_module, ec2):
    client, ids = ec2
    result, failed = run_module(ec2_stop_protection, {"instance_ids": ids, "enabled": True, "region": REGION})
    assert not failed, result
    assert result["changed"] and sorted(result["changed_ids"]) == sorted(ids)
    assert all(protected(client, i) for i in ids)
    # What the attribute is for: a stop request is refused.
    with pytest.raises(client.exceptions.ClientError, match=r"disableApiStop|OperationNotPermitted"):
        client.stop_instances(InstanceIds=ids[:1])
    again, failed = run_module(ec2_stop_protection, {"instance_ids": ids, "enabled": True, "region": REGION})
    assert not failed and not again["changed"] and again["changed_ids"] == []


def test_only_the_instances_that_differ_change(run_module, ec2):
    client, ids = ec2
    client.modify_instance_attribute(InstanceId=ids[0], DisableApiStop={"Value": True})
    result, failed = run_module(ec2_stop_protection, {"instance_ids": ids, "enabled": False, "region": REGION})
    assert not failed and result["changed_ids"] == [ids[0]]
    assert result["diff"] == {"before": {"disable_api_stop": {ids[0]: True}},
                              "after": {"disable_api_stop": {ids[0]: False}}}
    assert not any(protected(client, i) for i in ids)


def test_check_mode_reports_and_changes_nothing(run_module, ec2):
    client, ids = ec2
    result, failed = run_module(ec2_stop_protection, {"instance_ids": ids, "enabled": True, "region": REGION},
                                check_mode=True)
    assert not failed and result["changed"] and len(result["changed_ids"]) == 2
    assert not any(protected(client, i) for i in ids)


def test_a_malformed_id_fails_before_any_call(run_module, ec2):
    client, good = ec2
    result, failed = run_module(ec2_stop_protection, {"instance_ids": [good[0], "web-1"], "enabled": True,
                                                      "region": REGION})
    assert failed and "instance_ids: web-1 is not an EC2 instance id (i-...)" in result["msg"], result["msg"]
    assert not any(protected(client, i) for i in good)


def test_an_api_error_names_the_instance_and_what_was_already_changed(run_module, ec2, monkeypatch):
    """An unknown instance id is retried by amazon.aws for minutes (eventual consistency); the refusal
    is injected at the second instance's modify call instead."""
    client, ids = ec2
    real = ec2_stop_protection.modify_instance_attribute

    def refuse_second(ec2_client, instance_id, **params):
        if instance_id == ids[1]:
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed"}},
                              "ModifyInstanceAttribute")
        return real(ec2_client, instance_id, **params)

    monkeypatch.setattr(ec2_stop_protection, "modify_instance_attribute", refuse_second)
    result, failed = run_module(ec2_stop_protection, {"instance_ids": ids, "enabled": True, "region": REGION})
    assert failed
    assert f"setting stop protection to True failed at {ids[1]}; already changed: {ids[0]}" in result["msg"]
    assert protected(client, ids[0]) and not protected(client, ids[1])
