<#-- ml-console: the IDs of the reports an export selects, and nothing else (FreeMarker 2.3.25
     or later). Output: one JSON array of strings, on a single line. Used to isolate a report
     whose data stops export.ftl (the whole job fails then): reportID is the one field read,
     with export.ftl's own null-safe `s` function. The simulator
     (console/sim/export_render.py, render_report_ids) reproduces this output byte for byte. -->
<#function s v><#if v?is_number><#return v?c><#elseif v?is_boolean><#return v?string("true","false")><#else><#return v?string></#if></#function>
[<#t>
<#list (reports![]) as r>
"${s(r.reportID!"")?json_string}"<#if r?has_next>,</#if><#t>
</#list>
]<#t>
