<#-- ml-console card reconciliation export for Expensify's Integration Server (a "reconciliation"
     job; FreeMarker 2.3.25 or later for the key-value #list over the `cards` map).
     Output: one JSON array, one object per card with its reports and their expenses, on a
     single line. Unreported card expenses sit on the report with ID 0; deleted ones have a
     negative reportID. Amounts are integer cents exactly as the reconciliation data holds
     them: the sign is INVERTED there (a purchase is negative); the client turns it round.
     Same null-safe helpers as export.ftl. The simulator (console/sim/expensify_app.py)
     reproduces this output byte for byte; change both together. -->
<#function s v><#if v?is_number><#return v?c><#elseif v?is_boolean><#return v?string("true","false")><#else><#return v?string></#if></#function>
<#function n v><#if v?has_content && v?is_number><#return v?c><#else><#return "null"></#if></#function>
<#function b v><#if v?is_boolean><#return v?string("true","false")><#else><#return "null"></#if></#function>
[<#t>
<#list (cards!{}) as card, reports>
{"cardID":"${s(card.ID!"")?json_string}",<#t>
"cardName":"${s(card.name!"")?json_string}",<#t>
"bank":"${s(card.bank!"")?json_string}",<#t>
"owner":"${s(card.owner!"")?json_string}",<#t>
"reports":[<#t>
<#list (reports![]) as report>
{"reportID":"${s(report.ID!"")?json_string}",<#t>
"reportName":"${s(report.name!"")?json_string}",<#t>
"status":"${s(report.status!"")?json_string}",<#t>
"policyID":"${s(report.policyID!"")?json_string}",<#t>
"submitterEmail":"${s(report.submitterEmail!"")?json_string}",<#t>
"currency":"${s(report.currency!"")?json_string}",<#t>
"transactions":[<#t>
<#list (report.transactionList![]) as e>
{"transactionID":"${s(e.ID!"")?json_string}",<#t>
"reportID":"${s(e.reportID!"")?json_string}",<#t>
"cardID":"${s(e.cardID!"")?json_string}",<#t>
"maskedPAN":"${s(e.maskedPAN!"")?json_string}",<#t>
"merchant":"${s(e.originalMerchant!"")?json_string}",<#t>
"modifiedMerchant":"${s(e.modifiedMerchant!"")?json_string}",<#t>
"originalAmount":${n(e.originalAmount!"")},<#t>
"modifiedAmount":${n(e.modifiedAmount!"")},<#t>
"amountModified":${b(e.amountModified!"")},<#t>
"currency":"${s(e.currency!"")?json_string}",<#t>
"posted":"${s(e.posted!"")?json_string}",<#t>
"created":"${s(e.originalCreated!"")?json_string}",<#t>
"modifiedCreated":"${s(e.modifiedCreated!"")?json_string}",<#t>
"category":"${s(e.category!"")?json_string}",<#t>
"tag":"${s(e.tag!"")?json_string}",<#t>
"comment":"${s(e.comment!"")?json_string}",<#t>
"externalID":"${s(e.externalID!"")?json_string}",<#t>
"reimbursable":${b(e.reimbursable!"")},<#t>
"billable":${b(e.billable!"")}}<#if e?has_next>,</#if><#t>
</#list>
]}<#if report?has_next>,</#if><#t>
</#list>
]}<#if card?has_next>,</#if><#t>
</#list>
]<#t>
