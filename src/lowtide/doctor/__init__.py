"""``lowtide doctor``: where a live server's commands come from, and what to fix.

``monitor`` parses MONITOR lines (Lua, IPv6 and unix sockets included), ``families`` masks ids
in keys, ``analyze`` projects per day, prices them and reports findings, ``run`` samples a live
server (MONITOR, or INFO commandstats deltas where MONITOR is refused).
"""

from lowtide.doctor.analyze import Finding, Report, analyse, report_from_commandstats
from lowtide.doctor.families import family_of
from lowtide.doctor.monitor import Command, ParseStats, parse_line, parse_lines
from lowtide.doctor.run import diagnose_live, diagnose_log

__all__ = [
    "Command",
    "Finding",
    "ParseStats",
    "Report",
    "analyse",
    "diagnose_live",
    "diagnose_log",
    "family_of",
    "parse_line",
    "parse_lines",
    "report_from_commandstats",
]
