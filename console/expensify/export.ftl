<#-- ml-console report export for Expensify's Integration Server (FreeMarker 2.3.25 or later).
     Output: one JSON array, one object per report with its transactions, on a single line.
     Strings go through ?json_string (never ?js_string: it writes \' which is not JSON),
     numbers through ?c (no locale grouping), and every field is null-safe: a missing string
     is "", a missing number or boolean is null. Amounts are integer cents as Expensify holds
     them. The simulator (console/sim/export_render.py) reproduces this output byte for byte;
     change both together. -->
<#function s v><#if v?is_number><#return v?c><#elseif v?is_boolean><#return v?string("true","false")><#else><#return v?string></#if></#function>
<#function n v><#if v?has_content && v?is_number><#return v?c><#else><#return "null"></#if></#function>
<#function b v><#if v?is_boolean><#return v?string("true","false")><#else><#return "null"></#if></#function>
[<#t>
<#list (reports![]) as r>
{"reportID":"${s(r.reportID!"")?json_string}",<#t>
"reportName":"${s(r.reportName!"")?json_string}",<#t>
"status":"${s(r.status!"")?json_string}",<#t>
"policyID":"${s(r.policyID!"")?json_string}",<#t>
"policyName":"${s(r.policyName!"")?json_string}",<#t>
"accountEmail":"${s(r.accountEmail!"")?json_string}",<#t>
"submitterName":"${s((r.submitter.fullName)!"")?json_string}",<#t>
"managerEmail":"${s(r.managerEmail!"")?json_string}",<#t>
"currency":"${s(r.currency!"")?json_string}",<#t>
"total":${n(r.total!"")},<#t>
"created":"${s(r.created!"")?json_string}",<#t>
"submitted":"${s(r.submitted!"")?json_string}",<#t>
"approved":"${s(r.approved!"")?json_string}",<#t>
"reimbursed":"${s(r.reimbursed!"")?json_string}",<#t>
"employeeCustomField1":"${s(r.employeeCustomField1!"")?json_string}",<#t>
"employeeCustomField2":"${s(r.employeeCustomField2!"")?json_string}",<#t>
"submitterPayrollID":"${s(r.submitterPayrollID!"")?json_string}",<#t>
"submitterUserID":"${s(r.submitterUserID!"")?json_string}",<#t>
"reportFields":{<#list (r.customField!{}) as k, v>"${k?json_string}":"${s(v!"")?json_string}"<#sep>,</#sep></#list>},<#t>
"approvers":[<#t>
<#list (r.approvers![]) as a>
{"email":"${s(a.email!"")?json_string}","date":"${s(a.date!"")?json_string}"}<#if a?has_next>,</#if><#t>
</#list>
],<#t>
"transactions":[<#t>
<#list (r.transactionList![]) as e>
{"transactionID":"${s(e.transactionID!"")?json_string}",<#t>
"reportID":"${s(e.reportID!"")?json_string}",<#t>
"merchant":"${s(e.merchant!"")?json_string}",<#t>
"modifiedMerchant":"${s(e.modifiedMerchant!"")?json_string}",<#t>
"amount":${n(e.amount!"")},<#t>
"modifiedAmount":${n(e.modifiedAmount!"")},<#t>
"convertedAmount":${n(e.convertedAmount!"")},<#t>
"currency":"${s(e.currency!"")?json_string}",<#t>
"currencyConversionRate":"${s(e.currencyConversionRate!"")?json_string}",<#t>
"category":"${s(e.category!"")?json_string}",<#t>
"categoryGlCode":"${s(e.categoryGlCode!"")?json_string}",<#t>
"tag":"${s(e.tag!"")?json_string}",<#t>
"tagGlCode":"${s(e.tagGlCode!"")?json_string}",<#t>
"comment":"${s(e.comment!"")?json_string}",<#t>
"created":"${s(e.created!"")?json_string}",<#t>
"modifiedCreated":"${s(e.modifiedCreated!"")?json_string}",<#t>
"inserted":"${s(e.inserted!"")?json_string}",<#t>
"reimbursable":${b(e.reimbursable!"")},<#t>
"billable":${b(e.billable!"")},<#t>
"taxAmount":${n(e.taxAmount!"")},<#t>
"taxCode":"${s(e.taxCode!"")?json_string}",<#t>
"taxName":"${s(e.taxName!"")?json_string}",<#t>
"taxRateName":"${s(e.taxRateName!"")?json_string}",<#t>
"cardID":"${s(e.cardID!"")?json_string}",<#t>
"cardNumber":"${s(e.cardNumber!"")?json_string}",<#t>
"mcc":"${s(e.mcc!"")?json_string}",<#t>
"unitsCount":${n((e.units.count)!"")},<#t>
"unitsRate":${n((e.units.rate)!"")},<#t>
"unitsUnit":"${s((e.units.unit)!"")?json_string}",<#t>
"receiptID":"${s(e.receiptID!"")?json_string}",<#t>
"receiptURL":"${s((e.receiptObject.url)!"")?json_string}"}<#if e?has_next>,</#if><#t>
</#list>
]}<#if r?has_next>,</#if><#t>
</#list>
]<#t>
