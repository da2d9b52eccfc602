"""Drive ec2fake with Debian's python3-boto3 (a client nobody here wrote) and
check that every answer parses into the shapes botocore's service models
describe. Usage: boto3_check.py ENDPOINT_URL RAW_IMAGE_PATH. Prints a JSON
summary on the last line; exits non-zero on the first failed check."""

import datetime
import json
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError, WaiterError

endpoint, raw_image = sys.argv[1], sys.argv[2]
cfg = botocore.config.Config(
    region_name="us-east-1",
    retries={"mode": "standard", "max_attempts": 6},
    s3={"addressing_style": "path"},
)
kw = dict(endpoint_url=endpoint, aws_access_key_id="AKIDFAKE", aws_secret_access_key="secret", config=cfg)
ec2 = boto3.client("ec2", **kw)
s3 = boto3.client("s3", **kw)
ssm = boto3.client("ssm", **kw)
summary = {}


def check(cond, what):
    if not cond:
        print("FAILED: " + what, file=sys.stderr)
        sys.exit(1)


def error_code(f, *a, **k):
    try:
        f(*a, **k)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def is_id(v, prefix):
    return isinstance(v, str) and v.startswith(prefix + "-") and len(v) > len(prefix) + 1


# Network: the default VPC and subnet.
vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
check(len(vpcs) == 1 and is_id(vpcs[0]["VpcId"], "vpc") and vpcs[0]["IsDefault"] is True, "default VPC: %r" % vpcs)
vpc = vpcs[0]["VpcId"]
subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
check(len(subnets) == 1 and isinstance(subnets[0]["AvailableIpAddressCount"], int), "default subnet: %r" % subnets)
subnet = subnets[0]["SubnetId"]

# Instance types, through botocore's paginator.
types = []
for page in ec2.get_paginator("describe_instance_types").paginate(
    Filters=[{"Name": "processor-info.supported-architecture", "Values": ["x86_64"]}, {"Name": "current-generation", "Values": ["true"]}]
):
    types += page["InstanceTypes"]
check(len(types) > 10, "paginated instance types: %d" % len(types))
t = [x for x in types if x["InstanceType"] == "t3.medium"]
check(len(t) == 1 and t[0]["VCpuInfo"]["DefaultVCpus"] == 2 and t[0]["MemoryInfo"]["SizeInMiB"] == 4096
      and t[0]["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"], "t3.medium: %r" % t)
summary["instanceTypes"] = len(types)

# Security group with tags, ingress rules, describe by tag.
tags = [{"Key": "k2.dev/environment", "Value": "boto"}, {"Key": "k2.dev/request-id", "Value": "req-1"}]
sg = ec2.create_security_group(GroupName="k2-boto", Description="k2 boto3 check", VpcId=vpc,
                               TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])
check(is_id(sg["GroupId"], "sg"), "CreateSecurityGroup: %r" % sg)
gid = sg["GroupId"]
check(error_code(ec2.create_security_group, GroupName="k2-boto", Description="again", VpcId=vpc) == "InvalidGroup.Duplicate", "duplicate group")
auth = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
    {"IpProtocol": "tcp", "FromPort": 6443, "ToPort": 6443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
    {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid}]},
])
check(auth["Return"] is True and len(auth["SecurityGroupRules"]) == 2, "AuthorizeSecurityGroupIngress: %r" % auth)
got = ec2.describe_security_groups(Filters=[{"Name": "tag:k2.dev/environment", "Values": ["boto"]}])["SecurityGroups"]
check(len(got) == 1 and got[0]["GroupId"] == gid, "DescribeSecurityGroups by tag: %r" % got)
perms = got[0]["IpPermissions"]
check(perms[0]["FromPort"] == 6443 and perms[0]["IpRanges"][0]["CidrIp"] == "10.0.0.0/8", "ingress rule: %r" % perms)
check(perms[1]["IpProtocol"] == "-1" and perms[1]["UserIdGroupPairs"][0]["GroupId"] == gid, "group rule: %r" % perms)

# The Debian AMI through its SSM public parameter.
param = ssm.get_parameter(Name="/aws/service/debian/release/12/latest/amd64")["Parameter"]
check(is_id(param["Value"], "ami") and isinstance(param["LastModifiedDate"], datetime.datetime), "GetParameter: %r" % param)
ami = param["Value"]
check(error_code(ssm.get_parameter, Name="/no/such") == "ParameterNotFound", "missing parameter")
img = ec2.describe_images(ImageIds=[ami])["Images"]
check(len(img) == 1 and img[0]["Architecture"] == "x86_64" and img[0]["State"] == "available", "DescribeImages: %r" % img)

# RunInstances with a client token: a retry returns the same instance.
run = dict(ImageId=ami, InstanceType="t3.medium", MinCount=1, MaxCount=1, ClientToken="boto-token-1",
           SecurityGroupIds=[gid], SubnetId=subnet, UserData="#cloud-config\n{}\n",
           MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
           BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3"}}],
           TagSpecifications=[{"ResourceType": "instance", "Tags": tags + [{"Key": "Name", "Value": "boto-1"}]}])
check(error_code(ec2.run_instances, DryRun=True, **run) == "DryRunOperation", "DryRun")
r1 = ec2.run_instances(**run)
r2 = ec2.run_instances(**run)
i1 = r1["Instances"][0]
check(is_id(i1["InstanceId"], "i") and i1["State"]["Name"] == "pending" and isinstance(i1["LaunchTime"], datetime.datetime),
      "RunInstances: %r" % i1)
check(r2["Instances"][0]["InstanceId"] == i1["InstanceId"], "same ClientToken gave another instance")
check(i1["MetadataOptions"]["HttpTokens"] == "required" and i1["ClientToken"] == "boto-token-1", "instance options: %r" % i1)
changed = dict(run, InstanceType="t3.large")
check(error_code(ec2.run_instances, **changed) == "IdempotentParameterMismatch", "changed parameters with the same token")
iid = i1["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
d = ec2.describe_instances(Filters=[{"Name": "tag:k2.dev/request-id", "Values": ["req-1"]},
                                    {"Name": "instance-state-name", "Values": ["pending", "running"]}])
insts = [i for r in d["Reservations"] for i in r["Instances"]]
check(len(insts) == 1 and insts[0]["State"]["Name"] == "running" and insts[0]["PrivateIpAddress"], "DescribeInstances by tag: %r" % insts)
check({t["Key"]: t["Value"] for t in insts[0]["Tags"]}["Name"] == "boto-1", "instance tags")
out = ec2.get_console_output(InstanceId=iid)
# botocore decodes the base64 console output itself.
check(out["InstanceId"] == iid and iid in out["Output"], "GetConsoleOutput: %r" % out)
check(error_code(ec2.describe_instances, InstanceIds=["i-0123456789abcdef0"]) == "InvalidInstanceID.NotFound", "unknown instance")

# Tags on an existing resource.
ec2.create_tags(Resources=[iid], Tags=[{"Key": "extra", "Value": "yes"}])
dt = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}, {"Name": "key", "Values": ["extra"]}])["Tags"]
check(dt == [{"Key": "extra", "ResourceId": iid, "ResourceType": "instance", "Value": "yes"}], "DescribeTags: %r" % dt)

# The group cannot go while the instance lives; after termination it can.
check(error_code(ec2.delete_security_group, GroupId=gid) == "DependencyViolation", "delete group in use")
term = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
check(term["CurrentState"]["Name"] == "shutting-down" and term["PreviousState"]["Name"] == "running", "TerminateInstances: %r" % term)
ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
ec2.delete_security_group(GroupId=gid)
check(error_code(ec2.describe_security_groups, GroupIds=[gid]) == "InvalidGroup.NotFound", "group gone")

# Image import: S3 upload, ImportSnapshot, wait, RegisterImage.
s3.create_bucket(Bucket="k2-images")
s3.head_bucket(Bucket="k2-images")
with open(raw_image, "rb") as f:
    s3.put_object(Bucket="k2-images", Key="k2os.raw", Body=f)
head = s3.head_object(Bucket="k2-images", Key="k2os.raw")
check(head["ContentLength"] > 0, "HeadObject: %r" % head)
task = ec2.import_snapshot(Description="k2 os", DiskContainer={"Format": "RAW", "UserBucket": {"S3Bucket": "k2-images", "S3Key": "k2os.raw"}},
                           ClientToken="import-1")
tid = task["ImportTaskId"]
check(tid.startswith("import-snap-") and task["SnapshotTaskDetail"]["Status"] == "active", "ImportSnapshot: %r" % task)
detail = None
for _ in range(60):
    detail = ec2.describe_import_snapshot_tasks(ImportTaskIds=[tid])["ImportSnapshotTasks"][0]["SnapshotTaskDetail"]
    if detail["Status"] != "active":
        break
    import time
    time.sleep(0.1)
check(detail["Status"] == "completed" and is_id(detail["SnapshotId"], "snap"), "import task: %r" % detail)
reg = ec2.register_image(Name="k2-os-boto", Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm",
                         EnaSupport=True, BootMode="uefi-preferred", ImdsSupport="v2.0",
                         BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": detail["SnapshotId"]}}])
check(is_id(reg["ImageId"], "ami"), "RegisterImage: %r" % reg)
mine = ec2.describe_images(Owners=["self"])["Images"]
check([i["ImageId"] for i in mine] == [reg["ImageId"]] and mine[0]["ImdsSupport"] == "v2.0", "own images: %r" % mine)
s3.delete_object(Bucket="k2-images", Key="k2os.raw")

summary.update(instance=iid, image=reg["ImageId"], snapshot=detail["SnapshotId"])
print(json.dumps(summary))
