"""How the admin writes dates and times (FORMAT_MODULE_PATH): 24-hour ISO in UTC, saying so, as the
console does (cloudwatchdog.timeutil.format_utc). Django's own English formats ("Dec. 3, 2026, 9:04 a.m.",
no zone) would win over settings.DATETIME_FORMAT, so they are replaced here. Input formats stay Django's."""
DATETIME_FORMAT = r"Y-m-d H:i:s \U\T\C"
SHORT_DATETIME_FORMAT = r"Y-m-d H:i \U\T\C"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
