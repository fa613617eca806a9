"""``panoptic-ros replay BAG``: publish a bag's camera topics over ROS 2.

Publishes every sensor_msgs/Image and CompressedImage message of the chosen topics with its
original header (the recorded CDR bytes are sent unchanged, after checking they deserialise;
a ROS 1 ``.bag``'s messages are converted to their ROS 2 types first),
paced by the recorded log times scaled by ``--rate`` (``--rate 0``: as fast as possible).
``--clock`` also publishes rosgraph_msgs/Clock on /clock with the bag's time, for nodes
running with ``use_sim_time``. Publishers are reliable (depth ``--depth``) by default so a
fast replay is not lost inside DDS; the subscriber's own QoS decides what it keeps (the
node's sensor-data input keeps only the latest frame). ``--dds-profile`` (default: the shipped
config/fastdds_large_frames.xml, 16 MiB shared-memory segment) unless a profile is set already
(under the variable the loaded Fast DDS reads: ros/dds_profile.py). At the end the publishers
stay up ``--linger`` seconds (default 1) so best-effort subscribers such as the node also get the
last frames.

With ``--loop`` the stamps start over at each pass; panoptic_node takes a stamp earlier than the
previous one as a new sequence and resets its trackers, so track ids start again at 1 (README
"Track ids"). Replay sends frames only: the node (or ``process-bag`` offline) tracks them.

Last stdout line: ``frames=N topics=K seconds=S skipped=M loops=L``.
"""

from __future__ import annotations

import sys
import time

from panoptic_ros.cli import raise_if_interrupted
from panoptic_ros.ros import dds_profile

HELP = "publish a bag's image topics over ROS 2 with their original stamps (rate-scaled; optional /clock)"


def add_arguments(p) -> None:
    p.add_argument("bag", help="rosbag2 directory, .mcap or .db3 file, or ROS 1 .bag file")
    p.add_argument(
        "--topics",
        nargs="+",
        metavar="TOPIC",
        help="image topics to publish (default: all image topics)",
    )
    p.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="publish topic FROM under the name TO (repeatable)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="playback speed factor on the recorded times; 0 = as fast as possible (default 1)",
    )
    p.add_argument(
        "--loop", action="store_true", help="start over at the end until interrupted (Ctrl-C)"
    )
    p.add_argument(
        "--clock",
        nargs="?",
        type=float,
        const=40.0,
        default=None,
        metavar="HZ",
        help="publish /clock (rosgraph_msgs/Clock) with the bag time, HZ times a second (default 40)",
    )
    p.add_argument(
        "--qos",
        choices=("reliable", "best-effort"),
        default="reliable",
        help="publisher reliability (default reliable)",
    )
    p.add_argument("--depth", type=int, default=100, help="publisher history depth (default 100)")
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SEC",
        help="before publishing, wait up to SEC seconds until every topic has a subscriber",
    )
    p.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        metavar="SEC",
        help="sleep SEC seconds after creating the publishers (discovery) before the first frame",
    )
    p.add_argument(
        "--ack-timeout",
        type=float,
        default=5.0,
        metavar="SEC",
        help="at the end, wait up to SEC seconds for reliable subscribers to acknowledge everything",
    )
    p.add_argument(
        "--linger",
        type=float,
        default=1.0,
        metavar="SEC",
        help="at the end, keep the publishers alive SEC seconds so best-effort subscribers take the last "
        "frames (they never acknowledge, so --ack-timeout does not wait for them; default 1)",
    )
    dds_profile.add_argument(p)


def _parse_remaps(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"--remap expects FROM:=TO, got {item!r}")
        a, b = item.split(":=", 1)
        out[a] = b
    return out


def run(args) -> int:
    from panoptic_ros.bags.messages import BagError
    from panoptic_ros.bags.reader import BagReader

    if args.rate < 0:
        print("replay: --rate must be >= 0", file=sys.stderr)
        return 2
    try:
        remaps = _parse_remaps(args.remap)
        dds_profile.apply(
            getattr(args, "dds_profile", None)
        )  # before the first participant; an existing env setting wins
    except (ValueError, FileNotFoundError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    try:
        with BagReader(args.bag) as reader:
            topics = reader.image_topics(args.topics)
            infos = reader.topics
            for p in reader.problems:
                print(f"replay: warning: {p}", file=sys.stderr)
            stats = replay(
                reader,
                topics,
                {t: infos[t].msgtype for t in topics},
                remaps=remaps,
                rate=args.rate,
                loop=args.loop,
                clock_hz=args.clock,
                reliable=args.qos == "reliable",
                depth=args.depth,
                wait_for_subscribers=args.wait_for_subscribers,
                start_delay=args.start_delay,
                ack_timeout=args.ack_timeout,
                linger=args.linger,
            )
    except BagError as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        print("frames=0 topics=0 seconds=0 skipped=0 loops=0 error=1")
        return 2
    print(
        f"replay: published {stats['frames']} frames on {stats['topics']} topic(s) in {stats['seconds']:.2f} s"
        + (f", skipped {stats['skipped']} unreadable" if stats["skipped"] else "")
        + (" (interrupted)" if stats["interrupted"] else ""),
        file=sys.stderr,
    )
    print(
        f"frames={stats['frames']} topics={stats['topics']} seconds={stats['seconds']:.3f} "
        f"skipped={stats['skipped']} loops={stats['loops']}"
        + (" interrupted=1" if stats["interrupted"] else "")
    )
    return 1 if stats["problems"] else 0


def replay(
    reader,
    topics: list[str],
    msgtypes: dict[str, str],
    *,
    remaps: dict[str, str] | None = None,
    rate: float = 1.0,
    loop: bool = False,
    clock_hz: float | None = None,
    reliable: bool = True,
    depth: int = 100,
    wait_for_subscribers: float = 0.0,
    start_delay: float = 0.0,
    ack_timeout: float = 5.0,
    linger: float = 1.0,
    node_name: str = "panoptic_replay",
    progress: bool | None = None,
) -> dict:
    """Publish ``topics`` of an open ``BagReader``; returns counts (see the module docstring)."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from panoptic_ros.bags.messages import BagMessageError, deserialize, message_class
    from panoptic_ros.cli.progress import progress_bar
    from panoptic_ros.ros.conversions import ns_to_stamp

    remaps = remaps or {}
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init(args=[])
    node = rclpy.create_node(node_name)
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(1, depth),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
    )
    pubs = {
        t: node.create_publisher(message_class(msgtypes[t]), remaps.get(t, t), qos) for t in topics
    }
    clock_pub = None
    if clock_hz is not None:
        from rosgraph_msgs.msg import Clock

        clock_pub = node.create_publisher(
            Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )

    def publish_clock(ns: int) -> None:
        if clock_pub is not None:
            from rosgraph_msgs.msg import Clock

            clock_pub.publish(Clock(clock=ns_to_stamp(ns)))

    stats = {
        "frames": 0,
        "topics": len(topics),
        "seconds": 0.0,
        "skipped": 0,
        "loops": 0,
        "interrupted": False,
        "problems": [],
    }
    total = sum(reader.topics[t].count for t in topics)
    bar = progress_bar(
        total if not loop else None,
        "replay",
        disable=progress if progress is None else not progress,
    )
    t_begin = time.monotonic()
    try:
        if wait_for_subscribers > 0:
            deadline = time.monotonic() + wait_for_subscribers
            while time.monotonic() < deadline and not all(
                p.get_subscription_count() > 0 for p in pubs.values()
            ):
                time.sleep(0.05)
            missing = [remaps.get(t, t) for t, p in pubs.items() if p.get_subscription_count() == 0]
            if missing:
                print(
                    f"replay: warning: no subscriber on {', '.join(missing)} after {wait_for_subscribers:g} s; "
                    "publishing anyway",
                    file=sys.stderr,
                )
        if start_delay > 0:
            time.sleep(start_delay)
        t_begin = time.monotonic()
        clock_period = 1.0 / clock_hz if clock_hz else None
        while True:
            t0_bag = None
            t0_wall = time.monotonic()
            for rec in reader.messages(topics):
                raise_if_interrupted()  # a SIGTERM Python dropped while rclpy imported
                if t0_bag is None:
                    t0_bag = rec.log_time
                if rate > 0:
                    target = t0_wall + (rec.log_time - t0_bag) / 1e9 / rate
                    while True:
                        now = time.monotonic()
                        if now >= target:
                            break
                        if clock_period:
                            bag_now = t0_bag + int((now - t0_wall) * rate * 1e9)
                            publish_clock(bag_now)
                            time.sleep(min(clock_period, target - now))
                        else:
                            time.sleep(target - now)
                try:
                    deserialize(
                        rec, reader.path
                    )  # refuse corrupt payloads rather than forward them
                except BagMessageError as exc:
                    stats["skipped"] += 1
                    stats["problems"].append(str(exc))
                    print(f"replay: skipping {exc}", file=sys.stderr)
                    continue
                publish_clock(rec.log_time)
                pubs[rec.topic].publish(rec.data)
                stats["frames"] += 1
                bar.update(1)
            stats["loops"] += 1
            for p in reader.problems:
                if p not in stats["problems"]:
                    stats["problems"].append(p)
                    print(f"replay: warning: {p}", file=sys.stderr)
            if not loop or stats["frames"] == 0:
                break
    except KeyboardInterrupt:
        stats["interrupted"] = True
    finally:
        stats["seconds"] = time.monotonic() - t_begin
        bar.close()
        if reliable and not stats["interrupted"]:
            for p in pubs.values():
                try:
                    p.wait_for_all_acked(Duration(seconds=ack_timeout))
                except Exception:
                    pass
        if linger > 0 and not stats["interrupted"] and stats["frames"]:
            # Best-effort readers never acknowledge, so nothing above waited for them; destroying
            # the writer at once races their receive threads for the last frames.
            time.sleep(linger)
        node.destroy_node()
        if own_context and rclpy.ok():
            rclpy.shutdown()
    return stats
